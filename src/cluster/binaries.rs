//! Finding the PostgreSQL server binaries and the OS user to run them as.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ClusterError;

/// The environment variable naming a directory holding `initdb`, `pg_ctl` and `postgres`.
pub const PG_BIN_ENV: &str = "PGROAR_PG_BIN";

/// The programs a bin directory must hold to be usable.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// Tried in order: `$PGROAR_PG_BIN` (when set, it is the only candidate), the directory of
/// `initdb` on `PATH` (symlinks resolved), `pg_config --bindir`, and the highest-numbered
/// `/usr/lib/postgresql/*/bin`. The error lists every candidate and why it was rejected.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        return match missing_programs(&dir) {
            None => Ok(dir),
            Some(why) => {
                tried.push(format!("${PG_BIN_ENV} = {}: {why}", dir.display()));
                Err(ClusterError::BinariesNotFound { tried })
            }
        };
    }
    tried.push(format!("${PG_BIN_ENV}: not set"));

    match on_path("initdb") {
        Some(initdb) => {
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb.clone());
            let dir = real.parent().map(Path::to_path_buf).unwrap_or_default();
            match missing_programs(&dir) {
                None => return Ok(dir),
                Some(why) => tried.push(format!(
                    "initdb on PATH ({} -> {}): {why}",
                    initdb.display(),
                    dir.display()
                )),
            }
        }
        None => tried.push("initdb on PATH: not found".to_owned()),
    }

    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            match missing_programs(&dir) {
                None => return Ok(dir),
                Some(why) => tried.push(format!("pg_config --bindir ({}): {why}", dir.display())),
            }
        }
        Ok(out) => tried.push(format!("pg_config --bindir: exited with {}", out.status)),
        Err(e) => tried.push(format!("pg_config --bindir: {e}")),
    }

    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let key = name.split('.').map(|p| p.parse().unwrap_or(0)).collect();
                    (key, e.path().join("bin"))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if versions.is_empty() {
        tried.push(format!("{}/*/bin: none", root.display()));
    }
    for (_, dir) in versions.into_iter().rev() {
        match missing_programs(&dir) {
            None => return Ok(dir),
            Some(why) => tried.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(ClusterError::BinariesNotFound { tried })
}

/// `None` when `dir` holds every required program, else a description of what is missing.
fn missing_programs(dir: &Path) -> Option<String> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|p| !is_executable(&dir.join(p)))
        .collect();
    (!missing.is_empty()).then(|| format!("no executable {}", missing.join(", ")))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// The uid/gid the server programs run as.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `initdb` refuses to run as root: when we are root, the programs run as the `postgres` user.
/// The switch is made by setting the child's uid/gid (and dropping supplementary groups)
/// rather than through `runuser`/`su`: no extra tool needed, and the environment is untouched.
pub(super) fn run_as() -> Result<Option<RunAs>, ClusterError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user("postgres")
        .map(Some)
        .ok_or(ClusterError::NoPostgresUser)
}

/// Looks a user up by name with the reentrant `getpwnam_r`.
fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    let mut buf_len = 4096usize;
    loop {
        let mut buf = vec![0 as libc::c_char; buf_len];
        // SAFETY: an all-zero `passwd` is a valid value (null pointers and zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and `buf_len` is the
        // real length of `buf`; the strings `pwd` points at live in `buf`, which we only
        // read ids from (not strings) after the call.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf_len,
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf_len < 1 << 20 {
            buf_len *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_is_found_and_unknown_users_are_not() {
        assert_eq!(lookup_user("root").map(|u| u.uid), Some(0));
        assert_eq!(lookup_user("no-such-user-pgroar"), None);
    }

    #[test]
    fn a_directory_without_the_programs_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let why = missing_programs(dir.path()).unwrap();
        assert!(why.contains("initdb") && why.contains("pg_ctl") && why.contains("postgres"));
    }
}
