//! A job's spool: every [`JobEvent`] of a supervised job, in order, in one append-only file,
//! and the job's status file (per step exit code, final outcome), replaced atomically.
//!
//! The supervisor process writes both; the worker process reads the spool from where it got to
//! and turns it back into the same events, so a worker that was restarted reads it again from
//! the start and loses nothing. Byte offsets in the job's log (what the coordinator stores) are
//! counted over the `Log` records' data alone, from 0.
//!
//! A record is `len: u32 BE`, then `len` bytes: a kind byte and its fields (big-endian):
//! `L` step u32, stream u8, data; `S` step u32, exit code i32; `F` outcome i32, exit code i32,
//! steps done u32, message (UTF-8); `W` nothing. A record cut short at the end of the file is
//! not read until it is complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use baton_proto::v1::{JobOutcome, LogStream};

use crate::runner::{JobEnd, JobEvent};

/// Largest record the reader accepts (a log chunk is at most 64 KiB).
const RECORD_LIMIT: usize = 1024 * 1024;

/// Encodes one event as a spool record.
pub(crate) fn encode(event: &JobEvent) -> Vec<u8> {
    let mut body = Vec::new();
    match event {
        JobEvent::Log { step, stream, data } => {
            body.push(b'L');
            body.extend_from_slice(&step.to_be_bytes());
            body.push(*stream as u8);
            body.extend_from_slice(data);
        }
        JobEvent::StepFinished { step, exit_code } => {
            body.push(b'S');
            body.extend_from_slice(&step.to_be_bytes());
            body.extend_from_slice(&exit_code.to_be_bytes());
        }
        JobEvent::Finished(end) => {
            body.push(b'F');
            body.extend_from_slice(&(end.outcome as i32).to_be_bytes());
            body.extend_from_slice(&end.exit_code.to_be_bytes());
            body.extend_from_slice(&end.steps_done.to_be_bytes());
            body.extend_from_slice(end.message.as_bytes());
        }
        JobEvent::Withdrawn => body.push(b'W'),
    }
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut record = len.to_be_bytes().to_vec();
    record.extend_from_slice(&body);
    record
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a record's body; `None` for one this build does not understand.
fn decode(body: &[u8]) -> Option<JobEvent> {
    match *body.first()? {
        b'L' => Some(JobEvent::Log {
            step: u32_at(body, 1)?,
            stream: LogStream::try_from(i32::from(*body.get(5)?)).ok()?,
            data: body.get(6..)?.to_vec(),
        }),
        b'S' => Some(JobEvent::StepFinished {
            step: u32_at(body, 1)?,
            exit_code: i32_at(body, 5)?,
        }),
        b'F' => Some(JobEvent::Finished(JobEnd {
            outcome: JobOutcome::try_from(i32_at(body, 1)?).unwrap_or(JobOutcome::Failed),
            exit_code: i32_at(body, 5)?,
            steps_done: u32_at(body, 9)?,
            message: String::from_utf8_lossy(body.get(13..)?).into_owned(),
        })),
        b'W' => Some(JobEvent::Withdrawn),
        _ => None,
    }
}

/// Appends records to a spool (the supervisor's side).
pub(crate) struct SpoolWriter {
    file: std::fs::File,
}

impl SpoolWriter {
    /// Opens (creating) the spool at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self { file })
    }

    /// Appends one event (one `write`, so a reader sees it whole or not yet).
    pub fn append(&mut self, event: &JobEvent) -> std::io::Result<()> {
        self.file.write_all(&encode(event))
    }
}

/// Reads a spool from the start, a little more each time (the worker's side).
pub(crate) struct SpoolReader {
    path: PathBuf,
    /// File offset of the next record.
    pos: u64,
}

impl SpoolReader {
    /// A reader at the start of the spool at `path` (which may not exist yet).
    pub fn new(path: PathBuf) -> Self {
        Self { path, pos: 0 }
    }

    /// The complete records written since the last call, in order.
    pub fn read_new(&mut self) -> std::io::Result<Vec<JobEvent>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let mut events = Vec::new();
        let mut at = 0usize;
        while let Some(len) = u32_at(&buf, at) {
            let len = len as usize;
            if len > RECORD_LIMIT {
                return Err(std::io::Error::other(format!(
                    "spool record of {len} bytes at offset {}",
                    self.pos + at as u64
                )));
            }
            let Some(body) = buf.get(at + 4..at + 4 + len) else {
                break;
            };
            match decode(body) {
                Some(event) => events.push(event),
                None => tracing::warn!(path = %self.path.display(), "unknown spool record skipped"),
            }
            at += 4 + len;
        }
        self.pos += at as u64;
        Ok(events)
    }
}

/// What the status file says: each finished step's exit code and, once ended, the outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    /// `(step, exit code)` of each step that finished, in order.
    pub steps: Vec<(u32, i32)>,
    /// How the job ended; `None` while it runs.
    pub end: Option<JobEnd>,
    /// The offer was withdrawn before anything ran.
    pub withdrawn: bool,
}

impl Status {
    /// Takes in one event.
    pub(crate) fn apply(&mut self, event: &JobEvent) {
        match event {
            JobEvent::StepFinished { step, exit_code } => self.steps.push((*step, *exit_code)),
            JobEvent::Finished(end) => self.end = Some(end.clone()),
            JobEvent::Withdrawn => self.withdrawn = true,
            JobEvent::Log { .. } => {}
        }
    }

    /// The file's text: `step N exit C` lines, then `end OUTCOME CODE STEPS_DONE` and
    /// `message TEXT` (newlines as spaces), or `withdrawn`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (step, code) in &self.steps {
            text.push_str(&format!("step {step} exit {code}\n"));
        }
        if let Some(end) = &self.end {
            text.push_str(&format!(
                "end {} {} {}\nmessage {}\n",
                end.outcome.as_str_name(),
                end.exit_code,
                end.steps_done,
                end.message.replace('\n', " ")
            ));
        }
        if self.withdrawn {
            text.push_str("withdrawn\n");
        }
        text
    }

    /// Writes the status file at `path` atomically (a temporary file, then rename).
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, self.render().as_bytes())
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so a reader sees the old
/// content or the new, never half.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_order_and_a_cut_record_waits() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("spool");
        let events = vec![
            JobEvent::Log {
                step: 0,
                stream: LogStream::System,
                data: b"==> step 1/1: echo hi\n".to_vec(),
            },
            JobEvent::Log {
                step: 0,
                stream: LogStream::Stderr,
                data: b"hi\n".to_vec(),
            },
            JobEvent::StepFinished {
                step: 0,
                exit_code: 3,
            },
            JobEvent::Finished(JobEnd {
                outcome: JobOutcome::Failed,
                exit_code: 3,
                message: "step 1 exited 3".into(),
                steps_done: 0,
            }),
        ];
        let mut writer = SpoolWriter::open(&path).expect("open");
        writer.append(&events[0]).expect("write");
        let mut reader = SpoolReader::new(path.clone());
        assert_eq!(reader.read_new().expect("read"), events[..1].to_vec());
        // Half a record: not read until the rest is there.
        let second = encode(&events[1]);
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        raw.write_all(&second[..5]).expect("write");
        assert_eq!(reader.read_new().expect("read"), Vec::new());
        raw.write_all(&second[5..]).expect("write");
        writer.append(&events[2]).expect("write");
        writer.append(&events[3]).expect("write");
        assert_eq!(reader.read_new().expect("read"), events[1..].to_vec());
        // A second reader (a restarted worker) reads it all from the start.
        let mut again = SpoolReader::new(path);
        assert_eq!(again.read_new().expect("read"), events);
    }

    #[test]
    fn status_says_each_step_and_the_end() {
        let mut status = Status::default();
        status.apply(&JobEvent::StepFinished {
            step: 0,
            exit_code: 0,
        });
        status.apply(&JobEvent::Finished(JobEnd {
            outcome: JobOutcome::Succeeded,
            exit_code: 0,
            message: String::new(),
            steps_done: 1,
        }));
        assert_eq!(
            status.render(),
            "step 0 exit 0\nend JOB_OUTCOME_SUCCEEDED 0 1\nmessage \n"
        );
    }
}
