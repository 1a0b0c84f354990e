//! The relations last seen, kept across restarts in `<data_dir>/relations`.
//!
//! pgoutput describes each table once per session, so a column dropped or retyped, or a table
//! renamed, while pgroar was stopped would look like a first description after a restart and
//! be accepted. The source therefore seeds its relation cache with what it saw last: the first
//! Relation message of a new session is then compared with it, and a tracked column changed
//! while stopped is refused exactly as one changed while streaming.
//!
//! # Guarantees and crash windows
//!
//! The file is rewritten (temporary file, fsync, rename, directory fsync) only after the
//! translator accepted a changed description, so it never holds a description the index was
//! not built for. Killed before the rename, the old file stays and Postgres describes the
//! table again in the next session. A file that fails its checksum is an error naming it (it
//! can only come from a disk fault); removing it starts without the comparison once.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use crate::decode::{Message, Relation, RelationCache, decode_message, encode_message};

/// The file's name in the data directory.
pub const RELATIONS_FILE: &str = "relations";

const MAGIC: &[u8; 8] = b"PGRREL01";

/// Why the relations file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RelationsFileError {
    /// Reading, writing or syncing failed.
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
    /// The file is damaged.
    #[error(
        "{} is damaged ({detail}); remove it to start without checking the source tables for changes made while pgroar was stopped",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The relations of the last run, as the file holds them (empty when there is none).
pub fn load(data_dir: &Path) -> Result<Vec<Relation>, RelationsFileError> {
    let path = data_dir.join(RELATIONS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RelationsFileError::Io {
                what: "read",
                path,
                source,
            });
        }
    };
    decode(&bytes).map_err(|detail| RelationsFileError::Corrupt { path, detail })
}

/// Writes every relation of `cache` when that differs from `last` (the bytes last written or
/// read); returns the bytes now on disk.
pub fn store(
    data_dir: &Path,
    cache: &RelationCache,
    last: &[u8],
) -> Result<Vec<u8>, RelationsFileError> {
    let mut relations: Vec<&Relation> = cache.iter().map(|r| &**r).collect();
    relations.sort_unstable_by_key(|r| r.oid);
    let bytes = encode(&relations);
    if bytes == last {
        return Ok(bytes);
    }
    let path = data_dir.join(RELATIONS_FILE);
    let tmp = data_dir.join(format!("{RELATIONS_FILE}.tmp"));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RelationsFileError::Io { what, path, source }
    };
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(&bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", data_dir))?;
    Ok(bytes)
}

/// The bytes of the file for `relations`: magic, then per relation its length (u32 BE) and
/// its pgoutput Relation message, then a CRC-32 of everything before.
pub fn encode(relations: &[&Relation]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut buf = BytesMut::new();
    for r in relations {
        buf.clear();
        encode_message(&Message::Relation((*r).clone()), &mut buf)
            .expect("a decoded relation encodes");
        out.extend_from_slice(&(buf.len() as u32).to_be_bytes());
        out.extend_from_slice(&buf);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The relations in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Vec<Relation>, String> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= MAGIC.len())
        .ok_or("too short")?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut rest = body.strip_prefix(MAGIC).ok_or("not a relations file")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or("truncated length")?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| "bad length")?) as usize;
        let (msg, tail) = tail.split_at_checked(len).ok_or("truncated relation")?;
        match decode_message(&bytes::Bytes::copy_from_slice(msg)) {
            Ok(Message::Relation(r)) => out.push(r),
            Ok(other) => return Err(format!("a {} message", other.kind())),
            Err(e) => return Err(e.to_string()),
        }
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decode::{Column, ReplicaIdentity};

    fn relation(oid: u32, name: &str, type_oid: u32) -> Relation {
        Relation {
            oid,
            namespace: Arc::from("public"),
            name: Arc::from(name),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![Column {
                flags: 1,
                name: Arc::from("id"),
                type_oid,
                type_modifier: -1,
            }],
        }
    }

    #[test]
    fn round_trips_rewrites_only_on_change_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let mut cache = RelationCache::new();
        cache.insert(relation(7, "b", 23));
        cache.insert(relation(3, "a", 20));
        let written = store(dir.path(), &cache, &[]).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded, vec![relation(3, "a", 20), relation(7, "b", 23)]);
        // Unchanged: nothing is written (a removed file stays removed).
        fs::remove_file(dir.path().join(RELATIONS_FILE)).unwrap();
        assert_eq!(store(dir.path(), &cache, &written).unwrap(), written);
        assert!(load(dir.path()).unwrap().is_empty());
        store(dir.path(), &cache, &[]).unwrap();
        let path = dir.path().join(RELATIONS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[12] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("damaged") && err.contains("remove it"),
            "{err}"
        );
    }
}
