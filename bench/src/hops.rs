//! `baton-bench hops DIR`: where a traced cancel or start spent its time, hop by hop.
//!
//! A run kept with `BATON_BENCH_KEEP=1 BATON_BENCH_LOG="warn,baton::hop=trace"` leaves one
//! directory per cluster, holding `coordinator.log`, one `wN.log` per worker and the jobs'
//! `marks/`. Each `baton::hop` event is a named moment on the path of a request (`api-stop`,
//! `log-synced`, `worker-signal`, ...); a `term-*` mark is the moment a job had SIGTERM
//! (`sigterm` here; the marks of both of `cancel-latency`'s jobs, the signal recorder and the
//! bash trap, whose trap runs later). From every occurrence of a path's first event, the first occurrence of each
//! next one is taken in turn, within [`WINDOW`]; the table gives each hop's median over the
//! occurrences that reached the path's end. Events of a job's supervisor are in its job
//! directory, removed when the job ends, so a supervised path reads from the worker's side only.

use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::Context;

use crate::stats::{Table, ms, percentile};

/// The longest a path may take from its first event to its last; an occurrence that does not
/// reach its end in that time (another request's events, a lost mark) is left out.
pub const WINDOW: f64 = 0.05;

/// The name given to the jobs' SIGTERM marks.
pub const SIGTERM: &str = "sigterm";

/// A stop: the API handler to the job's SIGTERM.
pub const STOP: &[&str] = &[
    "api-stop",
    "actor-stop",
    "actor-commit",
    "writer-got",
    "log-synced",
    "writer-durable",
    "actor-landed",
    "dispatcher-send",
    "worker-abandon",
    SIGTERM,
];

/// A start, to the step's shell started in the worker (jobs in the worker only: a supervised
/// job's spawn is logged by its supervisor).
pub const START: &[&str] = &[
    "api-start",
    "actor-start",
    "actor-commit",
    "writer-got",
    "log-synced",
    "writer-durable",
    "actor-landed",
    "dispatcher-send",
    "worker-offer",
    "worker-spawn",
    "worker-clone",
    "worker-cloned",
    "worker-spawned",
];

/// One named moment, in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When.
    pub at: f64,
    /// The event's name (the hop's message).
    pub name: String,
}

/// The event on one log line, if it is a `baton::hop` event: its timestamp (RFC 3339, the
/// line's first word) and its message (the last word). Colour codes are ignored.
pub fn parse_line(line: &str) -> Option<Event> {
    let plain = strip_ansi(line);
    if !plain.contains("baton::hop") {
        return None;
    }
    let mut words = plain.split_whitespace();
    let stamp = words.next()?;
    let name = words.next_back()?;
    let at = humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z'))
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(Event {
        at,
        name: name.to_string(),
    })
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every event a kept cluster directory holds, in time order: the coordinator's and the
/// workers' hop events, and each job's SIGTERM mark as [`SIGTERM`].
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut logs = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_log = name.ends_with(".log") && !name.ends_with(".err.log");
        if !is_log || !(name == "coordinator.log" || name.starts_with('w')) {
            continue;
        }
        logs += 1;
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        events.extend(text.lines().filter_map(parse_line));
    }
    if logs == 0 {
        anyhow::bail!(
            "{} holds no coordinator.log or wN.log: give a directory that a run kept (BATON_BENCH_KEEP=1 BATON_BENCH_LOG=\"warn,baton::hop=trace\" baton-bench cancel-latency prints `keeping DIR`)",
            dir.display()
        );
    }
    if let Ok(marks) = std::fs::read_dir(dir.join("marks")) {
        for mark in marks.flatten() {
            if !mark.file_name().to_string_lossy().starts_with("term-") {
                continue;
            }
            let at = std::fs::read_to_string(mark.path())
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok());
            if let Some(at) = at {
                events.push(Event {
                    at,
                    name: SIGTERM.into(),
                });
            }
        }
    }
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(events)
}

/// For each occurrence of `path[0]`, the time from each event of `path` to the next (one entry
/// per hop after the first), taking the first occurrence of each after the one before; only
/// occurrences that reach the end of `path` within [`WINDOW`].
pub fn walks(events: &[Event], path: &[&str]) -> Vec<Vec<f64>> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, start) in events.iter().enumerate() {
        if start.name != *first {
            continue;
        }
        let mut at = start.at;
        let mut next = i + 1;
        let mut gaps = Vec::with_capacity(rest.len());
        for hop in rest {
            let Some(found) = events[next..]
                .iter()
                .position(|e| e.name == *hop && e.at - start.at <= WINDOW)
            else {
                break;
            };
            let event = &events[next + found];
            gaps.push(event.at - at);
            at = event.at;
            next += found + 1;
        }
        if gaps.len() == rest.len() {
            out.push(gaps);
        }
    }
    out
}

/// Prints the table of `path` over `walks` and returns its JSON line: each hop's median and
/// 90th percentile in ms, and the whole path's.
pub fn report(dir: &Path, path: &[&str], walks: &[Vec<f64>]) -> serde_json::Value {
    let mut table = Table::new(&["hop", "p50", "p90"]);
    let mut hops = Vec::new();
    for (k, hop) in path.iter().skip(1).enumerate() {
        let gaps: Vec<f64> = walks.iter().map(|w| w[k] * 1000.0).collect();
        let (p50, p90) = (percentile(&gaps, 50.0), percentile(&gaps, 90.0));
        table.row(vec![format!("-> {hop}"), ms(p50), ms(p90)]);
        hops.push(serde_json::json!({ "to": hop, "p50_ms": p50, "p90_ms": p90 }));
    }
    let totals: Vec<f64> = walks
        .iter()
        .map(|w| w.iter().sum::<f64>() * 1000.0)
        .collect();
    let total = percentile(&totals, 50.0);
    table.row(vec![
        format!("{} -> {}", path[0], path[path.len() - 1]),
        ms(total),
        ms(percentile(&totals, 90.0)),
    ]);
    println!(
        "\nhops in {} from {} ({} of them reached {})",
        dir.display(),
        path[0],
        walks.len(),
        path[path.len() - 1]
    );
    table.print();
    serde_json::json!({
        "scenario": "hops",
        "dir": dir.display().to_string(),
        "from": path[0],
        "walks": walks.len(),
        "hops": hops,
        "total_p50_ms": total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\u{1b}[2m2026-12-08T01:06:44.427207Z\u{1b}[0m \u{1b}[35mTRACE\u{1b}[0m \u{1b}[2mbaton::hop\u{1b}[0m\u{1b}[2m:\u{1b}[0m api-stop
2026-12-08T01:06:44.427364Z TRACE baton::hop: actor-stop
2026-12-08T01:06:44.427400Z  INFO baton: something else
2026-12-08T01:06:44.427404Z TRACE baton::hop: actor-commit
2026-12-08T01:06:44.500000Z TRACE baton::hop: api-stop
2026-12-08T01:06:44.500100Z TRACE baton::hop: actor-stop
";

    fn log_events() -> Vec<Event> {
        LOG.lines().filter_map(parse_line).collect()
    }

    /// `gap` is `want` seconds, give or take `within`.
    fn assert_gap(gap: f64, want: f64, within: f64) {
        assert!((gap - want).abs() < within, "{gap} s, not {want} s");
    }

    #[test]
    fn hop_events_are_read_coloured_or_not_and_other_lines_skipped() {
        let events = log_events();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "api-stop",
                "actor-stop",
                "actor-commit",
                "api-stop",
                "actor-stop"
            ]
        );
        assert_gap(events[1].at - events[0].at, 0.000157, 1e-6);
    }

    #[test]
    fn a_path_is_walked_from_each_start_and_unfinished_walks_left_out() {
        let walks = walks(&log_events(), &["api-stop", "actor-stop", "actor-commit"]);
        // The second api-stop has no actor-commit after it: left out.
        assert_eq!(walks.len(), 1);
        assert_gap(walks[0][0], 0.000157, 1e-6);
        assert_gap(walks[0][1], 0.000040, 1e-6);
    }

    #[test]
    fn a_kept_directory_gives_the_logs_events_and_the_sigterm_marks_in_time_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("coordinator.log"), LOG).expect("write");
        std::fs::write(
            dir.path().join("w1.log"),
            "2026-12-08T01:06:44.427908Z TRACE baton::hop: worker-abandon\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("w1.err.log"), LOG).expect("write");
        std::fs::create_dir(dir.path().join("marks")).expect("mkdir");
        // 2026-12-08T01:06:44.428100Z
        std::fs::write(dir.path().join("marks/term-c1"), "1796692004.4281\n").expect("write");
        std::fs::write(dir.path().join("marks/start-c1"), "1796692004.0\n").expect("write");
        let events = read_dir(dir.path()).expect("read");
        assert_eq!(events.len(), 7, "{events:?}");
        let walks = walks(&events, &["api-stop", "worker-abandon", SIGTERM]);
        assert_eq!(walks.len(), 1);
        assert_gap(walks[0][0], 0.000701, 1e-6);
        assert_gap(walks[0][1], 0.000192, 1e-5);
    }

    #[test]
    fn a_directory_without_logs_says_what_to_give() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read_dir(dir.path()).expect_err("no logs").to_string();
        assert!(err.contains("BATON_BENCH_KEEP=1"), "{err}");
    }
}
