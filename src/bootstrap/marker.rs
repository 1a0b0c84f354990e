//! The data directory's bootstrap state, kept in two small files.
//!
//! * `bootstrapping` (the intent): written and fsynced, naming the slot, before the slot is
//!   created; removed only after the marker is durable.
//! * `bootstrap-complete` (the marker): written (temp file, fsync, rename, fsync of the
//!   directory) after the checkpoint at the slot's consistent point is durable. Its presence is
//!   what makes the index usable.
//!
//! Crash windows: before the intent, nothing of ours exists. Between the intent and the marker
//! the directory is [`DataDir::Incomplete`]: the next `bootstrap` or `run` drops the slot the
//! intent names and starts over; a half-written index is never taken for a complete one,
//! because only the marker says so. Between the marker and the intent's removal the directory
//! is already complete (the marker wins).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Lsn;

/// The intent file's name.
pub const INTENT_FILE: &str = "bootstrapping";
/// The marker file's name.
pub const MARKER_FILE: &str = "bootstrap-complete";

/// What the marker records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The slot the index streams from.
    pub slot: String,
    /// The slot's consistent point: the dump reflects every transaction committed before it.
    pub consistent_point: Lsn,
    /// Source rows loaded.
    pub rows: u64,
    /// When the bootstrap finished (RFC 3339 is not needed: seconds since the Unix epoch).
    pub finished_unix: u64,
}

/// The state of a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// Nothing of ours is there.
    Empty,
    /// A bootstrap started and did not finish (or state of unknown origin without a marker).
    Incomplete {
        /// The slot the intent names, if an intent is there.
        slot: Option<String>,
    },
    /// A bootstrap finished.
    Complete(Marker),
}

/// A marker or intent file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    /// An I/O error.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The marker does not parse.
    #[error("the bootstrap marker {} is corrupt; remove the data directory and bootstrap again", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MarkerError {
    let path = path.to_path_buf();
    move |source| MarkerError::Io { what, path, source }
}

/// The subdirectories and files a bootstrap owns (and wipes when starting over).
const OWNED: [&str; 5] = [
    "index",
    "wal",
    crate::source::slot::CREATING_SLOT_FILE,
    crate::source::relations::RELATIONS_FILE,
    MARKER_FILE,
];

/// Reads the state of `data_dir` (a missing directory is empty).
pub fn state(data_dir: &Path) -> Result<DataDir, MarkerError> {
    let marker = data_dir.join(MARKER_FILE);
    match fs::read(&marker) {
        Ok(bytes) => {
            return serde_json::from_slice(&bytes)
                .map(DataDir::Complete)
                .map_err(|source| MarkerError::Corrupt {
                    path: marker,
                    source,
                });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", &marker)(e)),
    }
    let intent = data_dir.join(INTENT_FILE);
    let slot = match fs::read_to_string(&intent) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &intent)(e)),
    };
    if slot.is_some() || has_data(data_dir) {
        return Ok(DataDir::Incomplete { slot });
    }
    Ok(DataDir::Empty)
}

/// Whether an index checkpoint or WAL segment is in `data_dir`.
fn has_data(data_dir: &Path) -> bool {
    ["index", "wal"]
        .iter()
        .any(|d| fs::read_dir(data_dir.join(d)).is_ok_and(|mut entries| entries.next().is_some()))
}

/// Removes what a bootstrap or a run wrote (index, WAL, marker, slot-creation intent), keeping
/// the bootstrap intent; other files in the directory are left alone.
pub fn wipe(data_dir: &Path) -> Result<(), MarkerError> {
    fs::create_dir_all(data_dir).map_err(io_err("create", data_dir))?;
    for name in OWNED {
        let path = data_dir.join(name);
        let r = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
    }
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> Result<(), MarkerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MarkerError> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
    sync_dir(dir)
}

/// Writes the intent naming `slot`, durably.
pub fn write_intent(data_dir: &Path, slot: &str) -> Result<(), MarkerError> {
    write_durably(data_dir, INTENT_FILE, slot.as_bytes())
}

/// Writes the marker durably, then removes the intent.
pub fn write_marker(data_dir: &Path, marker: &Marker) -> Result<(), MarkerError> {
    let json = serde_json::to_vec_pretty(marker).expect("a marker serialises");
    write_durably(data_dir, MARKER_FILE, &json)?;
    let intent = data_dir.join(INTENT_FILE);
    match fs::remove_file(&intent) {
        Ok(()) => sync_dir(data_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &intent)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        assert_eq!(state(&d).unwrap(), DataDir::Empty);
        write_intent(&d, "s1").unwrap();
        assert_eq!(
            state(&d).unwrap(),
            DataDir::Incomplete {
                slot: Some("s1".into())
            }
        );
        fs::create_dir_all(d.join("index")).unwrap();
        fs::write(d.join("index/checkpoint"), b"x").unwrap();
        fs::write(d.join("keep.txt"), b"user file").unwrap();
        let m = Marker {
            slot: "s1".into(),
            consistent_point: Lsn(0x16B3748),
            rows: 3,
            finished_unix: 1,
        };
        write_marker(&d, &m).unwrap();
        assert_eq!(state(&d).unwrap(), DataDir::Complete(m));
        assert!(!d.join(INTENT_FILE).exists());
        wipe(&d).unwrap();
        assert_eq!(state(&d).unwrap(), DataDir::Empty);
        assert!(d.join("keep.txt").exists());
        // Data without a marker or intent is incomplete too.
        fs::create_dir_all(d.join("wal")).unwrap();
        fs::write(d.join("wal/00000001.seg"), b"x").unwrap();
        assert_eq!(state(&d).unwrap(), DataDir::Incomplete { slot: None });
        fs::write(d.join(MARKER_FILE), b"{").unwrap();
        assert!(matches!(state(&d), Err(MarkerError::Corrupt { .. })));
    }
}
