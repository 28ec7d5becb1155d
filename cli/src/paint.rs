//! Colours for `baton state` on a terminal: a pass over the already aligned text that wraps
//! status words in ANSI colours (column widths were computed on the plain text, so alignment
//! holds). Nothing here runs when stdout is piped.

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

fn colour(word: &str) -> Option<&'static str> {
    Some(match word {
        "InProgress" | "Running" => "\x1b[34m",
        "Succeeded" => "\x1b[32m",
        "Failed" | "Lost" => "\x1b[31m",
        "Stopping" | "Paused" | "Waiting" | "Queued" => "\x1b[33m",
        "Superseded" | "Cancelled" | "Stopped" | "Abandoned" => "\x1b[35m",
        _ => return None,
    })
}

/// `text` (a `render_state` table, maybe followed by a `last event:` line) with colours: bold
/// headers, coloured statuses (not the MODE column, whose words are modes), yellow waiters.
pub fn paint_state(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut mode_column = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let newline = &line[body.len()..];
        if body.starts_with("STAGE ") {
            mode_column = body.find("MODE");
            out.push_str(&format!("{BOLD}{body}{RESET}{newline}"));
        } else if body.trim_start().starts_with("waiting:") {
            out.push_str(&format!("\x1b[33m{body}{RESET}{newline}"));
        } else if body.starts_with("Pipeline ") {
            out.push_str(&format!("{BOLD}{body}{RESET}{newline}"));
        } else {
            out.push_str(&paint_words(body, mode_column));
            out.push_str(newline);
        }
    }
    out
}

fn paint_words(line: &str, skip_at: Option<usize>) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let mut start = 0;
    for (i, c) in line
        .char_indices()
        .chain(std::iter::once((line.len(), ' ')))
    {
        if c == ' ' || c == '(' || c == ')' {
            let word = &line[start..i];
            match colour(word) {
                Some(code) if Some(start) != skip_at => {
                    out.push_str(&format!("{code}{word}{RESET}"));
                }
                _ => out.push_str(word),
            }
            if i < line.len() {
                out.push(c);
            }
            start = i + c.len_utf8();
        }
    }
    out
}

/// `line` (one line ending in a newline) in the colour of the status word `status`, bold.
pub fn paint_status_line(line: &str, status: &str) -> String {
    let body = line.trim_end_matches('\n');
    match colour(status) {
        Some(c) => format!("{BOLD}{c}{body}{RESET}\n"),
        None => format!("{BOLD}{body}{RESET}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_coloured_but_modes_and_alignment_are_kept() {
        let text = "STAGE  MODE        STATUS\nbuild  Superseded  InProgress\n    waiting: #5 x\n";
        let painted = paint_state(text);
        assert!(
            painted.contains("build  Superseded  \x1b[34mInProgress\x1b[0m\n"),
            "{painted:?}"
        );
        assert!(
            painted.contains("\x1b[33m    waiting: #5 x\x1b[0m"),
            "{painted:?}"
        );
        let plain = painted
            .replace("\x1b[0m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[33m", "")
            .replace("\x1b[34m", "");
        assert_eq!(plain, text);
    }
}
