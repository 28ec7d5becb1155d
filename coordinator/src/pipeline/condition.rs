//! `when` conditions: CEL expressions (through the `cel-interpreter` crate) over an
//! execution's source revision, used by auto-cancel.
//!
//! A condition is checked when the pipeline is put ([`check`]): it must parse, name only the
//! variables Baton provides and give true or false. [`evaluate`] runs it for one execution;
//! it never panics on what a file holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel_interpreter::{Context, Program, Value};

/// The variables a condition can use. Each is text; `tag` and `pull_request` are empty when
/// the revision has none.
pub const VARIABLES: [&str; 4] = ["branch", "tag", "pull_request", "pipeline"];

/// What a condition sees of an execution.
#[derive(Debug, Clone, Copy)]
pub struct ConditionInput<'a> {
    /// The revision's branch.
    pub branch: &'a str,
    /// The revision's tag ("" when none).
    pub tag: &'a str,
    /// The revision's pull request ("" when none).
    pub pull_request: &'a str,
    /// The pipeline's name.
    pub pipeline: &'a str,
}

/// A problem in an expression: 1-based line and column inside the expression, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Line in the expression (1 for a one-line expression).
    pub line: usize,
    /// Column in that line.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn whole(message: String) -> ExprError {
    ExprError {
        line: 1,
        column: 1,
        message,
    }
}

fn compile(expr: &str) -> Result<Program, ExprError> {
    // The CEL parser panics on some incomplete input (`branch != `) instead of returning an
    // error; a file's text must never bring the coordinator down.
    let parsed = std::panic::catch_unwind(|| Program::compile(expr)).map_err(|_| ExprError {
        line: 1,
        column: 1,
        message: format!(
            "`when: {expr}` is not a valid CEL expression (it looks incomplete); write a \
             condition such as `branch != 'main'`"
        ),
    })?;
    parsed.map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first.map_or((1, 1), |e| {
            (
                usize::try_from(e.pos.0).unwrap_or(1).max(1),
                usize::try_from(e.pos.1).unwrap_or(1).max(1),
            )
        });
        let what = first.map_or_else(|| "cannot be parsed".to_string(), |e| e.msg.clone());
        ExprError {
            line,
            column,
            message: format!(
                "`when: {expr}` is not a valid CEL expression: {what}; write a condition such \
                 as `branch != 'main'`"
            ),
        }
    })
}

/// How many compiled conditions [`compiled`] keeps; past that it starts over (a fleet has a
/// handful of distinct conditions, so this only bounds a pathological one).
const COMPILED_MAX: usize = 1024;

/// `expr` compiled, once: a pipeline's condition is asked about at every execution it starts,
/// and compiling and running even `true` takes about 52 µs on the development VM against 7 µs
/// to run it (release build, 5 ms apart; bench/PERFORMANCE.md). Failures are not kept (a
/// file whose condition does not compile is refused when it is put).
fn compiled(expr: &str) -> Result<Arc<Program>, ExprError> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = COMPILED.get_or_init(Mutex::default);
    if let Some(program) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
        return Ok(program.clone());
    }
    let program = Arc::new(compile(expr)?);
    let mut kept = cache.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= COMPILED_MAX {
        kept.clear();
    }
    kept.insert(expr.to_string(), program.clone());
    Ok(program)
}

fn run(program: &Program, input: ConditionInput<'_>) -> Result<Value, String> {
    let mut context = Context::default();
    for (name, value) in [
        ("branch", input.branch),
        ("tag", input.tag),
        ("pull_request", input.pull_request),
        ("pipeline", input.pipeline),
    ] {
        context.add_variable_from_value(name, value.to_string());
    }
    program.execute(&context).map_err(|e| e.to_string())
}

/// Checks a condition as a pipeline file gives it: it parses, uses only [`VARIABLES`] and
/// gives true or false (tried on a sample revision).
pub fn check(expr: &str) -> Result<(), ExprError> {
    if expr.trim().is_empty() {
        return Err(whole(
            "`when` is empty; write a condition such as `branch != 'main'`, or leave `when` \
             out to always apply"
                .into(),
        ));
    }
    let program = compile(expr)?;
    let references = program.references();
    if let Some(unknown) = references
        .variables()
        .into_iter()
        .find(|v| !VARIABLES.contains(v))
    {
        return Err(whole(format!(
            "`when` uses `{unknown}`, which Baton does not provide; a condition can use {}",
            VARIABLES.join(", ")
        )));
    }
    let sample = ConditionInput {
        branch: "main",
        tag: "",
        pull_request: "",
        pipeline: "pipeline",
    };
    match run(&program, sample) {
        Ok(Value::Bool(_)) => Ok(()),
        Ok(other) => Err(whole(format!(
            "`when: {expr}` gives a {} instead of true or false; compare, e.g. `branch != 'main'`",
            other.type_of()
        ))),
        Err(e) => Err(whole(format!("`when: {expr}` cannot be evaluated: {e}"))),
    }
}

/// Evaluates a checked condition for one execution. An error (which [`check`] makes
/// unlikely) is returned in words; callers treat it as false.
pub fn evaluate(expr: &str, input: ConditionInput<'_>) -> Result<bool, String> {
    let program = compiled(expr).map_err(|e| e.message)?;
    match run(&program, input)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "gave a {} instead of true or false",
            other.type_of()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on<'a>(branch: &'a str, tag: &'a str) -> ConditionInput<'a> {
        ConditionInput {
            branch,
            tag,
            pull_request: "",
            pipeline: "web",
        }
    }

    #[test]
    fn conditions_see_the_revision() {
        let expr = "branch != 'master'";
        assert_eq!(check(expr), Ok(()));
        assert_eq!(evaluate(expr, on("feature", "")), Ok(true));
        assert_eq!(evaluate(expr, on("master", "")), Ok(false));
        let tags = "tag.startsWith('v') && pipeline == 'web'";
        assert_eq!(evaluate(tags, on("main", "v1.2")), Ok(true));
        assert_eq!(evaluate(tags, on("main", "")), Ok(false));
        assert_eq!(evaluate("true", on("main", "")), Ok(true));
    }

    #[test]
    fn bad_expressions_are_refused_with_a_position() {
        let e = check("branch != ").expect_err("incomplete");
        assert!(e.message.contains("not a valid CEL expression"), "{e:?}");
        let e = check("branch == 'a' &&& tag").expect_err("syntax");
        assert!(e.message.contains("not a valid CEL expression"), "{e:?}");
        assert_eq!(e.line, 1);
        assert!(e.column > 1, "{e:?}");
        let e = check("brnch == 'main'").expect_err("unknown variable");
        assert!(e.message.contains("uses `brnch`"), "{e:?}");
        assert!(e.message.contains("branch, tag, pull_request, pipeline"));
        let e = check("branch").expect_err("not a boolean");
        assert!(e.message.contains("instead of true or false"), "{e:?}");
        assert!(check("  ").is_err());
    }

    #[test]
    fn a_condition_compiled_once_still_answers_for_each_revision() {
        let expr = "branch == 'main' || tag != ''";
        for _ in 0..3 {
            assert_eq!(evaluate(expr, on("main", "")), Ok(true));
            assert_eq!(evaluate(expr, on("feature", "")), Ok(false));
            assert_eq!(evaluate(expr, on("feature", "v2")), Ok(true));
        }
        // More distinct conditions than are kept: each still gives its own answer.
        for n in 0..COMPILED_MAX + 10 {
            let expr = format!("branch == 'b{n}'");
            let branch = format!("b{n}");
            assert_eq!(evaluate(&expr, on(&branch, "")), Ok(true), "{expr}");
            assert_eq!(evaluate(&expr, on("other", "")), Ok(false), "{expr}");
        }
        assert_eq!(evaluate(expr, on("main", "")), Ok(true));
        // One that does not compile is an error every time, never a kept answer.
        assert!(evaluate("branch == ", on("main", "")).is_err());
        assert!(evaluate("branch == ", on("main", "")).is_err());
    }
}
