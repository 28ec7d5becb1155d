//! Turns problems found in a pipeline file into [`PipelineFileError`]s a person can act on:
//! serde-saphyr's messages reworded for pipeline authors, a hint for the key at fault, and a
//! one-line snippet with a caret under the offending text.

use serde_saphyr::{Location, MessageFormatter, UserMessageFormatter};

use super::file::PipelineFileError;

/// A position in the source: 1-based line and column (in characters), and the length to
/// underline (at least one caret is drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

impl Pos {
    /// The start of the file, for problems that concern the whole file.
    pub const START: Pos = Pos {
        line: 1,
        column: 1,
        len: 0,
    };

    /// The position serde-saphyr recorded, or the file start when it has none.
    pub fn from_location(loc: &Location) -> Pos {
        if loc.line() == 0 {
            return Pos::START;
        }
        Pos {
            line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
            column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
            len: usize::try_from(loc.span().len()).unwrap_or(1),
        }
    }
}

/// Builds an error at `pos` with `message` and a snippet of `text`.
pub(crate) fn error_at(
    source_name: &str,
    text: &str,
    pos: Pos,
    message: impl Into<String>,
) -> PipelineFileError {
    let mut message = message.into();
    message.push_str(&snippet(text, pos));
    PipelineFileError {
        source_name: source_name.to_string(),
        line: pos.line,
        column: pos.column,
        message,
    }
}

/// Converts a serde-saphyr error (bad YAML, unknown key, wrong type...) into ours.
pub(crate) fn from_yaml_error(
    source_name: &str,
    text: &str,
    err: &serde_saphyr::Error,
) -> PipelineFileError {
    let pos = err
        .location()
        .map_or(Pos::START, |l| Pos::from_location(&l));
    let inner = err.without_snippet();
    let message = match inner {
        serde_saphyr::Error::Eof { .. } => {
            "the file is empty; a pipeline file needs at least `name` and `stages`".to_string()
        }
        serde_saphyr::Error::MultipleDocuments { .. } => {
            "a pipeline file holds one YAML document; remove this second `---` document \
             (or put it in its own file)"
                .to_string()
        }
        _ => reword(&UserMessageFormatter.format_message(inner), text, pos),
    };
    error_at(source_name, text, at_tab(text, pos, &message), message)
}

/// The parser reports a tab just after it; point at the tab itself.
fn at_tab(text: &str, pos: Pos, message: &str) -> Pos {
    if !message.starts_with("a tab ") {
        return pos;
    }
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1))
        .unwrap_or_default();
    let tab = line
        .chars()
        .take(pos.column)
        .collect::<Vec<_>>()
        .iter()
        .rposition(|c| *c == '\t');
    match tab {
        Some(i) => Pos {
            column: i + 1,
            len: 1,
            ..pos
        },
        None => pos,
    }
}

/// Rewords a serde-saphyr message for a pipeline author and adds what to do.
fn reword(raw: &str, text: &str, pos: Pos) -> String {
    let key = key_at(text, pos);
    // "`run_order` should be a whole number, 1 or more" says more than "expected a number".
    let wrong_type = |generic: &str| match &key {
        Some(KeyAt::Value(k)) => match expected_form(k) {
            Some(h) => format!("`{k}` should be {h}"),
            None => generic.to_string(),
        },
        Some(KeyAt::Item(k)) => match item_form(k) {
            Some(h) => format!("each item of `{k}` should be {h}"),
            None => format!("{generic} (in `{k}`)"),
        },
        None => generic.to_string(),
    };

    if let Some(rest) = raw.strip_prefix("unknown field ") {
        return unknown_key(rest);
    }
    if let Some(field) = raw.strip_prefix("missing field ") {
        let name = field.trim_matches('`');
        let what = format!("missing required key `{name}`");
        return match expected_form(name) {
            Some(h) => format!("{what}; add `{name}:`, {h}"),
            None => what,
        };
    }
    if raw.starts_with("duplicate mapping key") {
        let name = raw
            .split('`')
            .nth(1)
            .map_or_else(|| "this key".to_string(), |k| format!("`{k}`"));
        return format!("{name} appears twice in the same mapping; keep only one");
    }
    if raw.contains("tabs disallowed") {
        return "a tab is used for indentation; YAML indents with spaces only".into();
    }
    if raw.contains("null") {
        return match &key {
            Some(KeyAt::Value(k)) => {
                format!("`{k}` has no value; write it after `{k}:` (use '' for empty text)")
            }
            _ => "missing value; write something after the `:` or `-`".into(),
        };
    }
    if raw.contains("sequence start") {
        return wrong_type("expected a list (lines starting with `- `)");
    }
    if raw.contains("mapping start") {
        if key.is_none() && pos.line == 1 {
            return "expected a mapping of keys such as `name:` and `stages:` at the top of \
                    the file"
                .into();
        }
        return wrong_type("expected a mapping of `key: value` pairs");
    }
    if raw.contains("string scalar") {
        return wrong_type("expected a single value, not a list or a mapping");
    }
    if raw.starts_with("invalid boolean") {
        return wrong_type("expected true or false");
    }
    if raw.starts_with("invalid u") || raw.starts_with("invalid i") {
        return wrong_type("expected a whole number");
    }
    raw.to_string()
}

/// `rest` is serde's "`mdoe`, expected one of `name`, `mode`, `stages`" (or "expected `name`").
fn unknown_key(rest: &str) -> String {
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let found = found.trim_matches('`');
    let options: Vec<&str> = expected
        .trim_start_matches("one of ")
        .split(", ")
        .map(|s| s.trim_matches('`'))
        .filter(|s| !s.is_empty())
        .collect();
    let mut msg = format!("unknown key `{found}`");
    if !options.is_empty() {
        msg.push_str(&format!("; expected one of {}", options.join(", ")));
    }
    if let Some(best) = options
        .iter()
        .filter(|o| edit_distance(found, o) <= 2)
        .min_by_key(|o| edit_distance(found, o))
    {
        msg.push_str(&format!(" (did you mean `{best}`?)"));
    }
    msg
}

/// What the value of a known pipeline-file key should look like.
fn expected_form(key: &str) -> Option<&'static str> {
    Some(match key {
        "name" => "a name of letters, digits, `-`, `_` and `.`",
        "mode" => "one of superseded, queued, parallel",
        "stages" => "a list of stages, each starting `- name: ...` and holding `actions:`",
        "actions" => "a list of actions, each starting `- name: ...` and holding `run:`",
        "run" => "a list of shell commands, one per line starting with `- `",
        "run_order" => "a whole number, 1 or more",
        "labels" => "a mapping of worker labels such as `{ os: linux }`",
        "env" => "a mapping of environment variables such as `{ RUST_LOG: info }`",
        "timeout" | "grace" | "settle" | "max_wait" => "a duration such as 30s, 5m, 1h30m",
        "capacity" => "a whole number, 1 or more",
        "order" => "one of fifo, newest_first, newest_ready_first",
        "when_busy" => "one of supersede, pause, cancel_running",
        "lanes" => "`branch` (or leave it out for one lane)",
        "lane" => "`shared` (or leave it out for one lock per lane)",
        "interruptible" | "follow_latest" => "true or false",
        "on_cancel" => "abandon or drain",
        "concurrency_key" => "branch or pipeline",
        "auto_cancel" => "a mapping with `queued:` and/or `running:`",
        "queued" | "running" => "a mapping such as `{ when: \"branch != 'main'\" }`",
        "when" => "a CEL condition in quotes, such as \"branch != 'main'\"",
        "approval" => "a mapping such as `{ timeout: 2d, follow_latest: true }`",
        "retry" => "a mapping such as `{ lost: 2 }`",
        "lost" => "a whole number from 0 to 10",
        _ => return None,
    })
}

/// What one item of a known list key should look like.
fn item_form(key: &str) -> Option<&'static str> {
    Some(match key {
        "stages" => "a stage: `- name: build` followed by `actions:`",
        "actions" => "an action: `- name: compile` followed by `run:`",
        "run" => "one shell command (text), not a list or a mapping",
        _ => return None,
    })
}

/// The key a position belongs to: the value of `key:` on the same line, or an item of the
/// list under a `key:` above.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyAt {
    Value(String),
    Item(String),
}

/// The key whose value sits at `pos`: the `key:` just before it on its line, or else the
/// nearest less-indented `key:` line above (for list items).
fn key_at(text: &str, pos: Pos) -> Option<KeyAt> {
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(pos.line.checked_sub(1)?)?;
    let before: String = line.chars().take(pos.column.saturating_sub(1)).collect();
    // A missing value is reported at the key's own `:`.
    let through: String = line.chars().take(pos.column).collect();
    if let Some(k) = trailing_key(&before).or_else(|| trailing_key(&through)) {
        return Some(KeyAt::Value(k));
    }
    // Only a block list item (`- ` markers before the value) belongs to a key above.
    if !before.chars().all(|c| c == ' ' || c == '-') {
        return None;
    }
    let indent = before.len() - before.trim_start().len();
    lines[..pos.line - 1].iter().rev().find_map(|l| {
        let l_indent = l.len() - l.trim_start().len();
        if l.trim().is_empty() || l.trim_start().starts_with('#') || l_indent >= indent {
            return None;
        }
        trailing_key(l.trim_end()).map(KeyAt::Item)
    })
}

/// `"    run_order: "` gives `run_order`; the key must end the text (before the value).
fn trailing_key(text: &str) -> Option<String> {
    let head = text.trim_end().strip_suffix(':')?;
    let key: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}

/// Levenshtein distance, for "did you mean" on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The offending line with carets under `pos`, each line prefixed with a newline:
///
/// ```text
///   |
/// 4 |     run_order: 0
///   |                ^
/// ```
fn snippet(text: &str, pos: Pos) -> String {
    let Some(line) = text.lines().nth(pos.line.saturating_sub(1)) else {
        return String::new();
    };
    // Tabs would shift the caret; show them as single spaces.
    let shown: String = line
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let width = pos.line.to_string().len();
    let pad = " ".repeat(width);
    let start = pos.column.saturating_sub(1);
    let room = shown.chars().count().saturating_sub(start).max(1);
    let carets = "^".repeat(pos.len.clamp(1, room));
    format!(
        "\n{pad} |\n{n} | {shown}\n{pad} | {space}{carets}",
        n = pos.line,
        space = " ".repeat(start)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_underlines_the_span() {
        let text = "name: a\nmdoe: x\n";
        let s = snippet(
            text,
            Pos {
                line: 2,
                column: 1,
                len: 4,
            },
        );
        assert_eq!(s, "\n  |\n2 | mdoe: x\n  | ^^^^");
    }

    #[test]
    fn key_at_finds_inline_and_enclosing_keys() {
        let text = "a:\n  run_order: x\n  run:\n    - [1]\n";
        let at = |line, column| {
            key_at(
                text,
                Pos {
                    line,
                    column,
                    len: 1,
                },
            )
        };
        assert_eq!(at(2, 14), Some(KeyAt::Value("run_order".into())));
        assert_eq!(at(4, 7), Some(KeyAt::Item("run".into())));
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let m = unknown_key("`mdoe`, expected one of `name`, `mode`, `stages`");
        assert_eq!(
            m,
            "unknown key `mdoe`; expected one of name, mode, stages (did you mean `mode`?)"
        );
    }
}
