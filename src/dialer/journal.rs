//! The attempt journal: results that could not reach the store (it was unreachable), kept on
//! disk in order until they can be written.
//!
//! One JSON object per line ([`AttemptEnd`]), appended and fsync'd before [`Journal::push`]
//! returns, so a result survives this process dying too. [`Journal::pop_front`] rewrites the
//! file without its first entry (write to a temporary file, fsync, rename). Bounded: a full
//! journal refuses the entry (the caller keeps it and stops dialing), it never drops one. A
//! last line cut short by a crash mid-write is skipped when the file is opened (it was never
//! acknowledged); any other unreadable line is an error.
//!
//! What it must not do: talk to the store (the engine replays), or reorder entries.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::store::inflight::AttemptEnd;

/// Why the journal could not take or give back an entry.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("attempt journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("attempt journal {path} line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("attempt journal {path} is full ({max} results waiting for the store)")]
    Full { path: PathBuf, max: usize },
}

/// The journal file and its entries (in memory too: it is small and bounded).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    max: usize,
    entries: VecDeque<AttemptEnd>,
}

impl Journal {
    /// Opens (or starts) the journal at `path`, holding at most `max` entries.
    pub fn open(path: &Path, max: usize) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut entries = VecDeque::new();
        match File::open(path) {
            Ok(file) => {
                let lines: Vec<String> = BufReader::new(file)
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(io)?;
                let last = lines.len();
                for (i, line) in lines.iter().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<AttemptEnd>(line) {
                        Ok(end) => entries.push_back(end),
                        // A write cut short by a crash: it was never acknowledged.
                        Err(e) if i + 1 == last => {
                            tracing::warn!(
                                "attempt journal {}: last line unreadable, skipped: {e}",
                                path.display()
                            );
                        }
                        Err(e) => {
                            return Err(JournalError::Corrupt {
                                path: path.to_path_buf(),
                                line: i + 1,
                                reason: e.to_string(),
                            })
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let journal = Journal {
            path: path.to_path_buf(),
            max: max.max(1),
            entries,
        };
        // Rewritten whole, so a torn last line does not stay in front of the next append.
        journal.rewrite()?;
        Ok(journal)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max
    }

    /// Appends `end` and syncs it to disk; `Full` when the bound is reached.
    pub fn push(&mut self, end: &AttemptEnd) -> Result<(), JournalError> {
        if self.is_full() {
            return Err(JournalError::Full {
                path: self.path.clone(),
                max: self.max,
            });
        }
        let line = line_of(end);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        file.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        self.entries.push_back(end.clone());
        Ok(())
    }

    /// The oldest entry.
    pub fn front(&self) -> Option<&AttemptEnd> {
        self.entries.front()
    }

    /// Removes the oldest entry (it has been written to the store).
    pub fn pop_front(&mut self) -> Result<(), JournalError> {
        let popped = self.entries.pop_front();
        if let Err(e) = self.rewrite() {
            if let Some(end) = popped {
                self.entries.push_front(end);
            }
            return Err(e);
        }
        Ok(())
    }

    fn rewrite(&self) -> Result<(), JournalError> {
        if self.entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io(e)),
            };
        }
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(|e| self.io(e))?;
        for end in &self.entries {
            file.write_all(line_of(end).as_bytes())
                .map_err(|e| self.io(e))?;
        }
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn line_of(end: &AttemptEnd) -> String {
    let mut line = crate::store::to_json(end);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::ContactStatus;
    use crate::store::contacts::ContactTransition;
    use crate::store::AttemptRecord;

    fn end(contact: i64) -> AttemptEnd {
        AttemptEnd {
            node: "n1".into(),
            record: AttemptRecord {
                campaign_id: Some(1),
                contact_id: Some(contact),
                outcome: "answered".into(),
                ..AttemptRecord::default()
            },
            contact: ContactTransition {
                status: ContactStatus::Answered,
                next_attempt_at: None,
                last_outcome: Some("answered".into()),
            },
            counters: None,
            event: serde_json::json!({"attempt": 1}),
            at: 5,
        }
    }

    #[test]
    fn entries_survive_a_reopen_in_order_and_leave_when_popped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path, 10).unwrap();
        j.push(&end(1)).unwrap();
        j.push(&end(2)).unwrap();
        let mut j = Journal::open(&path, 10).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j.front().unwrap().record.contact_id, Some(1));
        j.pop_front().unwrap();
        let mut j = Journal::open(&path, 10).unwrap();
        assert_eq!(j.front().unwrap().record.contact_id, Some(2));
        j.pop_front().unwrap();
        assert!(j.is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn a_full_journal_refuses_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path, 1).unwrap();
        j.push(&end(1)).unwrap();
        assert!(matches!(j.push(&end(2)), Err(JournalError::Full { .. })));
        assert_eq!(Journal::open(&path, 1).unwrap().len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let good = line_of(&end(1));
        std::fs::write(&path, format!("{good}{{\"node\":\"n1\",\"rec")).unwrap();
        let j = Journal::open(&path, 10).unwrap();
        assert_eq!(j.len(), 1);
        std::fs::write(&path, format!("{{\"node\":\n{good}")).unwrap();
        assert!(matches!(
            Journal::open(&path, 10),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }
}
