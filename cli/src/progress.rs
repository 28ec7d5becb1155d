//! A spinner on stderr for commands that wait, shown only when stderr is a terminal; when it is
//! piped, the message is printed once as a plain line and nothing animates.

use std::io::IsTerminal;
use std::time::Duration;

/// A running spinner (or nothing, when hidden or not on a terminal).
pub struct Spinner(Option<indicatif::ProgressBar>);

/// Where a long wait stands: a spinner line that changes in place on a terminal; piped, one
/// plain stderr line per change (CI logs keep the story, nothing animates).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: String,
    quiet: bool,
}

impl Progress {
    /// Starts showing progress; `quiet` shows nothing at all (JSON output).
    pub fn start(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            bar,
            last: String::new(),
            quiet,
        }
    }

    /// Shows `message` if it differs from the last one.
    pub fn update(&mut self, message: &str) {
        if self.quiet || message == self.last {
            return;
        }
        self.last = message.to_string();
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("{message}"),
        }
    }

    /// Removes the spinner line (the caller prints the outcome).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Spinner {
    /// Shows `message` with a spinner on a terminal; prints it once otherwise.
    pub fn start(message: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            eprintln!("{message}");
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Shows nothing at all.
    pub fn hidden() -> Spinner {
        Spinner(None)
    }

    /// Stops the spinner, leaving `message` in its place (on a terminal only).
    pub fn finish(self, message: &str) {
        if let Some(bar) = self.0 {
            bar.finish_with_message(message.to_string());
        }
    }
}
