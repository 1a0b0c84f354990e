//! The forwarder's durable cursor: one line, the LSN of the last batch the remote took
//! (`0/16B3748`), replaced atomically (temporary file, fsync, rename, fsync of the directory).

use std::io::Write;
use std::path::Path;

use super::ForwardError;
use crate::Lsn;

/// The cursor's file name in the data directory.
pub const CURSOR_FILE: &str = "forward.cursor";

fn err(path: &Path) -> impl Fn(std::io::Error) -> ForwardError + '_ {
    move |source| ForwardError::Cursor {
        path: path.to_path_buf(),
        source,
    }
}

/// The cursor in `path`, or `None` when there is none yet.
pub fn read_cursor(path: &Path) -> Result<Option<Lsn>, ForwardError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            err(path)(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{:?} is not an LSN", text.trim()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path)(e)),
    }
}

/// Replaces the cursor in `path` with `lsn`, durably.
pub fn write_cursor(path: &Path, lsn: Lsn) -> Result<(), ForwardError> {
    let tmp = path.with_extension("cursor.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err(path))?;
    writeln!(f, "{lsn}").map_err(err(path))?;
    f.sync_all().map_err(err(path))?;
    std::fs::rename(&tmp, path).map_err(err(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CURSOR_FILE);
        assert_eq!(read_cursor(&path).unwrap(), None);
        write_cursor(&path, Lsn(0x16B_3748)).unwrap();
        assert_eq!(read_cursor(&path).unwrap(), Some(Lsn(0x16B_3748)));
        write_cursor(&path, Lsn(0x200_0000)).unwrap();
        assert_eq!(read_cursor(&path).unwrap(), Some(Lsn(0x200_0000)));
        std::fs::write(&path, "garbage").unwrap();
        assert!(read_cursor(&path).is_err());
    }
}
