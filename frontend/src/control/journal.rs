//! The spend journal: settled spend logs appended to local files before
//! they are written to the store, so neither a database outage nor a
//! `kill -9` during one loses them.
//!
//! The journal is a folder of segment files (`spend-<process>-<n>.jsonl`,
//! one JSON [`PendingLog`] a line). A gateway appends each batch to its
//! active segment and syncs it to disk, then seals the segment (appends go
//! to a new one) and writes its logs to the store; once they are stored
//! the segment is deleted. Each segment is held under an exclusive file
//! lock by the process that owns it, so several gateways may share one
//! folder: a segment that can be locked belongs to a process that died,
//! and [`Journal::open`] adopts it, to be written (replayed) like the
//! process's own. Writing a log twice is harmless: the store skips a
//! `request_id` it already holds.
//!
//! A process killed in the middle of an append leaves a torn last line;
//! reading skips lines that do not parse (that log was not yet synced, so
//! it falls under the documented loss of the last batch interval).
//!
//! Blocking file I/O: callers run these functions off the async workers
//! (`spawn_blocking`).

use super::spend_writer::PendingLog;
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name prefix and suffix of a segment.
const PREFIX: &str = "spend-";
const SUFFIX: &str = ".jsonl";

/// The journal of this process: where segments go and the one being
/// appended to.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// This process's part of segment names.
    owner: String,
    /// Number of the next segment.
    next: u64,
    active: Option<Active>,
}

#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: File,
    lines: usize,
}

/// A segment no longer appended to, whose logs are to be written to the
/// store; holds its lock until [`Sealed::remove`] (or drop, when writing
/// failed and the process ends: the next start adopts it).
#[derive(Debug)]
pub struct Sealed {
    path: PathBuf,
    /// The open, locked file.
    _lock: File,
    /// Whether this process wrote it (its costs are in this process's
    /// ledger) or adopted it from a dead one.
    pub own: bool,
}

/// What a segment read back holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// The logs, in order.
    pub logs: Vec<PendingLog>,
    /// Lines that did not parse (a torn last line), skipped.
    pub skipped: usize,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing) and adopts every
    /// segment of a process that is gone (the ones this process can lock).
    pub fn open(dir: &Path) -> std::io::Result<(Self, Vec<Sealed>)> {
        std::fs::create_dir_all(dir)?;
        let mut adopted = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => adopted.push(Sealed {
                    path,
                    _lock: file,
                    own: false,
                }),
                // A live gateway's segment.
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
                Err(e) => return Err(e.into()),
            }
        }
        adopted.sort_by(|a, b| a.path.cmp(&b.path));
        let journal = Self {
            dir: dir.to_owned(),
            owner: uuid::Uuid::new_v4().simple().to_string(),
            next: 0,
            active: None,
        };
        Ok((journal, adopted))
    }

    /// Appends `logs` to the active segment (creating one if needed) and
    /// syncs it to disk.
    pub fn append(&mut self, logs: &[PendingLog]) -> std::io::Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(logs.len() * 400);
        for log in logs {
            serde_json::to_writer(&mut bytes, log)?;
            bytes.push(b'\n');
        }
        if self.active.is_none() {
            self.active = Some(self.create()?);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(std::io::Error::other("no active journal segment"));
        };
        active.file.write_all(&bytes)?;
        active.file.sync_data()?;
        active.lines += logs.len();
        Ok(())
    }

    /// Whether the active segment holds logs not yet sealed.
    pub fn has_active(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.lines > 0)
    }

    /// Seals the active segment, if it holds anything; the next append
    /// starts a new one.
    pub fn seal(&mut self) -> Option<Sealed> {
        let active = self.active.take()?;
        if active.lines == 0 {
            self.active = Some(active);
            return None;
        }
        Some(Sealed {
            path: active.path,
            _lock: active.file,
            own: true,
        })
    }

    /// Removes the active segment when it is empty (a clean stop).
    pub fn close_active(&mut self) -> std::io::Result<()> {
        match self.active.take() {
            Some(active) if active.lines == 0 => std::fs::remove_file(active.path),
            _ => Ok(()),
        }
    }

    /// A new segment, created under a temporary name, locked, then renamed
    /// into place, so no other process can adopt it before it is locked.
    fn create(&mut self) -> std::io::Result<Active> {
        let name = format!("{PREFIX}{}-{:08}{SUFFIX}", self.owner, self.next);
        self.next += 1;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&tmp)?;
        flock(&file, FlockOperation::LockExclusive)?;
        let path = self.dir.join(name);
        std::fs::rename(&tmp, &path)?;
        Ok(Active {
            path,
            file,
            lines: 0,
        })
    }
}

impl Sealed {
    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the logs back, skipping lines that do not parse.
    pub fn read(&self) -> std::io::Result<Contents> {
        let mut contents = Contents::default();
        for line in BufReader::new(File::open(&self.path)?).split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<PendingLog>(&line) {
                Ok(log) => contents.logs.push(log),
                Err(_) => contents.skipped += 1,
            }
        }
        Ok(contents)
    }

    /// Deletes the segment: its logs are stored.
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::{SpendLog, SpendStatus};
    use chrono::Utc;

    fn log(id: &str, cost: f64) -> PendingLog {
        PendingLog {
            log: SpendLog {
                request_id: id.into(),
                token_hash: Some("h".into()),
                key_alias: None,
                team_id: None,
                user_id: None,
                model: "m".into(),
                provider_model: "openai/m".into(),
                prompt_tokens: 1,
                completion_tokens: 2,
                cost,
                start_time: Utc::now(),
                end_time: Utc::now(),
                cache_hit: false,
                status: SpendStatus::Success,
            },
            owners: vec!["key:h".into()],
        }
    }

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!("engine-journal-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn segments_round_trip_and_torn_lines_are_skipped() {
        let dir = dir();
        let (mut j, adopted) = Journal::open(&dir).unwrap();
        assert!(adopted.is_empty());
        assert!(j.seal().is_none());
        j.append(&[log("a", 1.0), log("b", 2.0)]).unwrap();
        j.append(&[log("c", 3.0)]).unwrap();
        let sealed = j.seal().unwrap();
        assert!(sealed.own);
        // A kill -9 mid-append leaves half a line.
        OpenOptions::new()
            .append(true)
            .open(sealed.path())
            .unwrap()
            .write_all(b"{\"log\": {\"request_id\": \"d")
            .unwrap();
        let read = sealed.read().unwrap();
        let ids: Vec<&str> = read
            .logs
            .iter()
            .map(|p| p.log.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(read.skipped, 1);
        assert_eq!(read.logs[2].owners, ["key:h"]);
        let path = sealed.path().to_owned();
        sealed.remove().unwrap();
        assert!(!path.exists());
        j.close_active().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_segments_of_dead_processes_are_adopted() {
        let dir = dir();
        let (mut live, _) = Journal::open(&dir).unwrap();
        live.append(&[log("live", 1.0)]).unwrap();
        let (mut dead, _) = Journal::open(&dir).unwrap();
        dead.append(&[log("dead-1", 1.0)]).unwrap();
        let sealed = dead.seal().unwrap();
        dead.append(&[log("dead-2", 1.0)]).unwrap();
        // The "dead" process goes away without cleaning up.
        drop(sealed);
        drop(dead);
        let (_next, adopted) = Journal::open(&dir).unwrap();
        let mut ids: Vec<String> = adopted
            .iter()
            .flat_map(|s| s.read().unwrap().logs)
            .map(|p| p.log.request_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["dead-1", "dead-2"]);
        assert!(adopted.iter().all(|s| !s.own));
        drop(live);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
