//! Layering: flags > environment > file > defaults, with errors that say where a value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::Settings;

/// One setting's declaration, as written in [`crate::settings!`].
#[derive(Debug, Clone)]
pub struct Spec {
    /// Field name and TOML key (`lease`); the flag is `--` plus this with `-` for `_`.
    pub key: &'static str,
    /// Environment variable (`BATON_LEASE`).
    pub env: &'static str,
    /// The field's doc comment.
    pub doc: &'static str,
    /// The flag may be repeated; values are joined with commas.
    pub repeated: bool,
    /// The value is never shown (tokens).
    pub secret: bool,
}

impl Spec {
    /// `--lease`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it.
    Default(String),
    /// A line of the config file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key.
        key: String,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default(flag) => write!(f, "{flag} (not set)"),
            Origin::File { path, line, key } => write!(f, "{}:{line}: `{key}`", path.display()),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// Settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad usage, `--help` or `--version`: clap prints it (call `.exit()`).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// A value, the file or a combination of settings is wrong; the text says where.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// Prints the error (or the help) and exits with clap's conventions: 0 for help, 2 otherwise.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Usage(e) => e.exit(),
            ConfigError::Invalid(text) => {
                eprintln!("error: {text}");
                std::process::exit(2)
            }
        }
    }
}

/// Loaded settings, plus where each came from and the parsed command line.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The settings.
    pub settings: S,
    /// The command line, for the binary's own flags.
    pub matches: ArgMatches,
    origins: BTreeMap<&'static str, Origin>,
}

impl<S> Loaded<S> {
    /// Where `key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| Origin::Default(format!("--{}", key.replace('_', "-"))))
    }

    /// An error about `key`, naming the flag, variable or file line it came from.
    pub fn invalid(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid(format!("{}: {message}", self.origin(key)))
    }
}

/// Adds `--config` and one flag per setting to `cmd`, parses the process's arguments and layers
/// flags > environment > file > defaults.
pub fn load<S: Settings>(cmd: Command) -> Result<Loaded<S>, ConfigError> {
    load_from(cmd, std::env::args_os())
}

/// [`load`] with explicit arguments (the environment is still the process's).
pub fn load_from<S: Settings, I, T>(cmd: Command, args: I) -> Result<Loaded<S>, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let specs = S::specs();
    let defaults = S::default();
    let mut cmd = cmd.arg(
        Arg::new("config")
            .long("config")
            .env("BATON_CONFIG")
            .value_name("FILE")
            .help("TOML file with any of the settings below (keys as the flags, with `_` for `-`); flags and BATON_* variables override it"),
    );
    for spec in &specs {
        cmd = cmd.arg(flag_for(spec, &defaults.show(spec.key)));
    }
    let matches = cmd.try_get_matches_from(args)?;
    let file = match matches.get_one::<String>("config") {
        Some(path) => Some(read_file(Path::new(path), &specs)?),
        None => None,
    };
    let mut settings = defaults;
    let mut origins = BTreeMap::new();
    for spec in &specs {
        let from_args = matches
            .get_many::<String>(spec.key)
            .map(|v| v.cloned().collect::<Vec<_>>().join(","));
        let (text, origin) = match (from_args, matches.value_source(spec.key)) {
            (Some(text), Some(ValueSource::EnvVariable)) => (text, Origin::Env(spec.env.into())),
            (Some(text), _) => (text, Origin::Flag(spec.flag())),
            (None, _) => match file.as_ref().and_then(|f| f.values.get(spec.key)) {
                Some((text, line)) => {
                    let origin = Origin::File {
                        path: file.as_ref().map(|f| f.path.clone()).unwrap_or_default(),
                        line: *line,
                        key: spec.key.to_string(),
                    };
                    (text.clone(), origin)
                }
                None => continue,
            },
        };
        settings
            .set(spec.key, &text)
            .map_err(|e| ConfigError::Invalid(format!("{origin}: {e}")))?;
        origins.insert(spec.key, origin);
    }
    Ok(Loaded {
        settings,
        matches,
        origins,
    })
}

fn flag_for(spec: &Spec, default: &str) -> Arg {
    let mut doc = spec.doc.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(at) = doc.find(" Default:") {
        doc.truncate(at);
    }
    let shown = if default.is_empty() { "none" } else { default };
    let mut arg = Arg::new(spec.key)
        .long(spec.key.replace('_', "-"))
        .env(spec.env)
        .value_name(if spec.repeated { "KEY=VALUE" } else { "VALUE" })
        .help(format!("{doc} [default: {shown}]"))
        .hide_env_values(spec.secret);
    if spec.repeated {
        arg = arg.action(ArgAction::Append).value_delimiter(',');
        // `--label os=linux --label gpu=true` reads better than `--labels` for one value.
        if let Some(one) = spec.key.strip_suffix('s') {
            arg = arg.visible_alias(one.replace('_', "-"));
        }
    }
    arg
}

/// A config file's values as text, with the line each is on.
struct FileValues {
    path: PathBuf,
    values: BTreeMap<String, (String, usize)>,
}

fn read_file(path: &Path, specs: &[Spec]) -> Result<FileValues, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("cannot read the config file {shown}: {e}")))?;
    let table: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{shown}: {}", e.to_string().trim_end())))?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let line = text[..value.span().start.min(text.len())]
            .matches('\n')
            .count()
            + 1;
        if !specs.iter().any(|s| s.key == key) {
            let keys: Vec<&str> = specs.iter().map(|s| s.key).collect();
            let hint = closest(&key, &keys)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(ConfigError::Invalid(format!(
                "{shown}:{line}: unknown setting `{key}`{hint}; the settings are: {}",
                keys.join(", ")
            )));
        }
        let as_text = value_text(value.get_ref())
            .map_err(|e| ConfigError::Invalid(format!("{shown}:{line}: `{key}`: {e}")))?;
        values.insert(key, (as_text, line));
    }
    Ok(FileValues {
        path: path.to_path_buf(),
        values,
    })
}

fn value_text(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(value_text)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| value_text(v).map(|v| format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Datetime(_) => {
            return Err("a date is not a valid value here; quote it as text".into());
        }
    })
}

/// The known key nearest to a typo, when it is close enough to be what was meant.
fn closest<'a>(typo: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .map(|k| (distance(typo, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
