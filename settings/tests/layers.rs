//! Layering through the public surface: flags over the file over defaults, and errors that name
//! the file line or flag. (Variables are covered by the binaries' tests, which set them on a
//! child process.)

use std::time::Duration;

use baton_settings::{ConfigError, Origin, load_from};
use clap::Command;

baton_settings::settings! {
    /// Settings for the tests.
    pub struct Demo {
        /// A duration. Default: 15 s.
        lease: Duration = Duration::from_secs(15), env "BATON_TEST_LAYERS_LEASE";
        /// A count. Default: 1.
        slots: u32 = 1, env "BATON_TEST_LAYERS_SLOTS";
        /// Labels. Default: os=linux.
        labels: std::collections::BTreeMap<String, String> =
            [("os".to_string(), "linux".to_string())].into(), env "BATON_TEST_LAYERS_LABELS";
        /// A secret. Default: none.
        token: String = String::new(), env "BATON_TEST_LAYERS_TOKEN", secret;
    }
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), text).expect("write");
    f
}

fn invalid(result: Result<baton_settings::Loaded<Demo>, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(text)) => text,
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let f = file("lease = \"2s\"\nslots = 3\n[labels]\nos = \"linux\"\nqueue = \"deploy\"\n");
    let path = f.path().display().to_string();
    let loaded =
        load_from::<Demo, _, _>(Command::new("t"), ["t", "--config", &path, "--slots", "5"])
            .expect("loads");
    assert_eq!(loaded.settings.lease, Duration::from_secs(2));
    assert_eq!(loaded.settings.slots, 5);
    assert_eq!(loaded.settings.labels.len(), 2);
    assert_eq!(loaded.origin("slots"), Origin::Flag("--slots".into()));
    assert!(matches!(
        loaded.origin("lease"),
        Origin::File { line: 1, .. }
    ));
    assert!(matches!(loaded.origin("token"), Origin::Default(_)));
}

#[test]
fn repeated_flags_collect_labels() {
    let loaded = load_from::<Demo, _, _>(
        Command::new("t"),
        ["t", "--labels", "os=linux", "--labels", "gpu=true"],
    )
    .expect("loads");
    assert_eq!(
        loaded.settings.labels.get("gpu").map(String::as_str),
        Some("true")
    );
}

#[test]
fn a_bad_file_value_names_the_file_and_line() {
    let f = file("slots = 2\n\nlease = \"soon\"\n");
    let path = f.path().display().to_string();
    let text = invalid(load_from(Command::new("t"), ["t", "--config", &path]));
    assert!(
        text.starts_with(&format!("{path}:3: `lease`: `soon` is not a duration")),
        "{text}"
    );
}

#[test]
fn an_unknown_file_key_suggests_the_right_one() {
    let f = file("slots = 2\nleese = \"1s\"\n");
    let path = f.path().display().to_string();
    let text = invalid(load_from(Command::new("t"), ["t", "--config", &path]));
    assert!(
        text.contains(":2: unknown setting `leese` (did you mean `lease`?)"),
        "{text}"
    );
}

#[test]
fn a_bad_flag_names_the_flag() {
    let text = invalid(load_from(Command::new("t"), ["t", "--slots", "many"]));
    assert!(
        text.starts_with("--slots: `many` is not a whole number"),
        "{text}"
    );
}

#[test]
fn help_shows_defaults_and_hides_secrets() {
    let err = load_from::<Demo, _, _>(Command::new("t"), ["t", "--help"]).expect_err("help");
    let help = err.to_string();
    assert!(help.contains("[default: 15s]"), "{help}");
    assert!(help.contains("[default: os=linux]"), "{help}");
    assert!(help.contains("BATON_TEST_LAYERS_LEASE"), "{help}");
    let shown = format!(
        "{:?}",
        Demo {
            token: "s3cr3t-value".into(),
            ..Demo::default()
        }
    );
    assert!(
        !shown.contains("s3cr3t-value") && shown.contains("<redacted>"),
        "{shown}"
    );
}
