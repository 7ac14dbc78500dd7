//! A sandbox's books on disk: one line with a snapshot of the books, then
//! one line per change.
//!
//! A request that changes the books appends its change (one `write` of one
//! JSON line, under the books' lock) instead of rewriting the whole state,
//! so what a request costs does not grow with the sandbox's history.
//! Opening the file replays the changes onto the snapshot and compacts
//! them into a new snapshot (written beside it, then renamed over it, so
//! the file is never half-written). A change cut off by a crash in the
//! middle of its line is dropped: the request that made it was never
//! answered. A sandbox without a file keeps its books in memory.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A sandbox's books: the state, and the changes that move it on.
pub(crate) trait Books: Default + Serialize + DeserializeOwned {
    type Change: Serialize + DeserializeOwned;

    /// Applies one change; replaying the same changes in the same order
    /// gives the same books.
    fn apply(&mut self, change: Self::Change);
}

/// Books and the file they are kept in.
pub(crate) struct Journaled<B: Books> {
    books: B,
    file: Option<(PathBuf, File)>,
    sandbox: &'static str,
}

impl<B: Books> std::ops::Deref for Journaled<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.books
    }
}

impl<B: Books> Journaled<B> {
    /// The books kept in `path` (compacted), or new ones; in memory when
    /// `path` is `None` or cannot be written (said in the log).
    pub fn open(path: Option<&Path>, sandbox: &'static str) -> Journaled<B> {
        let Some(path) = path else {
            return Journaled {
                books: B::default(),
                file: None,
                sandbox,
            };
        };
        let books = replay::<B>(path, sandbox);
        let file = compact(path, &books).and_then(|()| std::fs::OpenOptions::new().append(true).open(path));
        match file {
            Ok(file) => Journaled {
                books,
                file: Some((path.to_path_buf(), file)),
                sandbox,
            },
            Err(err) => {
                tracing::warn!(error = %err, sandbox, path = %path.display(), "a sandbox cannot keep its books on disk; keeping them in memory");
                Journaled {
                    books,
                    file: None,
                    sandbox,
                }
            }
        }
    }

    /// Applies `change` and appends it to the file.
    pub fn record(&mut self, change: B::Change) {
        if let Some((path, file)) = &mut self.file {
            let mut line = serde_json::to_vec(&change).expect("a sandbox change serialises");
            line.push(b'\n');
            if let Err(err) = file.write_all(&line) {
                tracing::warn!(error = %err, sandbox = self.sandbox, path = %path.display(), "a sandbox could not save a change");
            }
        }
        self.books.apply(change);
    }
}

/// The books kept in `path` as JSON, read without touching the file (for
/// operators and tests looking into a sandbox's books).
pub(crate) fn read_json<B: Books>(path: &Path, sandbox: &str) -> serde_json::Value {
    serde_json::to_value(replay::<B>(path, sandbox)).expect("sandbox books serialise")
}

/// The snapshot in the first line with every whole change line after it.
fn replay<B: Books>(path: &Path, sandbox: &str) -> B {
    let Ok(bytes) = std::fs::read(path) else {
        return B::default();
    };
    let mut lines = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty());
    let mut books: B = match lines.next().map(serde_json::from_slice) {
        None => return B::default(),
        Some(Ok(books)) => books,
        Some(Err(err)) => {
            tracing::warn!(error = %err, sandbox, path = %path.display(), "a sandbox's saved books do not read; starting empty");
            return B::default();
        }
    };
    let mut dropped = 0_usize;
    for line in lines {
        match serde_json::from_slice(line) {
            Ok(change) => books.apply(change),
            Err(_) => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::warn!(sandbox, dropped, path = %path.display(), "a sandbox dropped changes cut off by a crash");
    }
    books
}

/// Replaces the file with one snapshot line.
fn compact<B: Books>(path: &Path, books: &B) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let mut snapshot = serde_json::to_vec(books).map_err(std::io::Error::other)?;
    snapshot.push(b'\n');
    std::fs::write(&partial, snapshot)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default, Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Tally {
        seen: BTreeMap<String, u64>,
        next: u64,
    }

    #[derive(Serialize, serde::Deserialize)]
    struct Seen {
        key: String,
        n: u64,
    }

    impl Books for Tally {
        type Change = Seen;
        fn apply(&mut self, change: Seen) {
            self.next = self.next.max(change.n);
            self.seen.insert(change.key, change.n);
        }
    }

    fn seen(key: &str, n: u64) -> Seen {
        Seen { key: key.into(), n }
    }

    #[test]
    fn changes_survive_a_reopen_and_are_compacted_into_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        let mut books = Journaled::<Tally>::open(Some(&path), "test");
        books.record(seen("a", 1));
        books.record(seen("b", 2));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 3, "the empty snapshot, then one line per change");
        drop(books);

        let books = Journaled::<Tally>::open(Some(&path), "test");
        assert_eq!(books.next, 2);
        assert_eq!(books.seen.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            1,
            "compacted at open"
        );
    }

    #[test]
    fn a_change_cut_off_mid_line_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        let mut books = Journaled::<Tally>::open(Some(&path), "test");
        books.record(seen("a", 1));
        drop(books);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"key":"b","n""#).unwrap();
        drop(file);

        let mut books = Journaled::<Tally>::open(Some(&path), "test");
        assert_eq!(books.seen.keys().collect::<Vec<_>>(), ["a"]);
        books.record(seen("c", 3));
        drop(books);
        let books = Journaled::<Tally>::open(Some(&path), "test");
        assert_eq!(books.seen.keys().collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn books_saved_whole_by_an_earlier_version_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        std::fs::write(&path, r#"{"seen":{"old":7},"next":7}"#).unwrap();
        let mut books = Journaled::<Tally>::open(Some(&path), "test");
        assert_eq!(books.next, 7);
        books.record(seen("new", 8));
        drop(books);
        let books = Journaled::<Tally>::open(Some(&path), "test");
        assert_eq!(books.seen.len(), 2);
    }

    #[test]
    fn without_a_file_the_books_live_in_memory() {
        let mut books = Journaled::<Tally>::open(None, "test");
        books.record(seen("a", 1));
        assert_eq!(books.next, 1);
    }
}
