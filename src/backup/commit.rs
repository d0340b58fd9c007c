//! Repository side of a copy: temporary file, no-clobber publication, directory fsync, sweep.
//!
//! A file reaches its final name only after it was written completely to a temporary name in
//! the same directory, its size checked and fsynced; publication is a hard link to the final
//! name (which fails if the name exists, so a different file is never overwritten) followed by
//! removing the temporary name and fsyncing the directory. If the final name exists with the
//! same content the copy is deduplicated; with other content both are kept and the new one gets
//! a suffix derived from its hash. Temporary names carry the host name and pid of the daemon
//! that wrote them, so a restarted daemon removes only the leftovers of its dead predecessors.
//! Everything here is blocking I/O: call it from `spawn_blocking`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Suffix of temporary files.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// How a copy was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Final path.
    pub path: PathBuf,
    /// Final file name (may differ from the station's on a collision).
    pub name: String,
    /// An identical file was already there; nothing new was written.
    pub deduplicated: bool,
    /// A different file had the name; this one was given another name.
    pub renamed_for_collision: bool,
}

/// A name safe to use as one path component: `[A-Za-z0-9._-]`, others replaced by `_`,
/// never `.`/`..`, at most 100 bytes.
pub fn safe_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(100)
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = format!("_{out}");
    }
    out
}

/// `<root>/tmp/<host_uid>`: where copied, not yet catalogued files wait.
pub fn host_tmp_dir(root: &Path, host_uid: &str) -> PathBuf {
    root.join("tmp").join(safe_component(host_uid))
}

/// Temporary name for a download: `.<name>.<hostname>-<pid>.<task>-<attempt>.partial`.
pub fn partial_path(dir: &Path, name: &str, task_id: i64, attempt: u32) -> PathBuf {
    let host = partial_owner_host();
    dir.join(format!(
        ".{}.{host}-{}.{task_id}-{attempt}{PARTIAL_SUFFIX}",
        safe_component(name),
        std::process::id()
    ))
}

/// This host's name as used in temporary names (no dots, so names split unambiguously).
fn partial_owner_host() -> String {
    safe_component(&crate::instance::hostname()).replace('.', "_")
}

/// fsyncs a directory so a rename or link in it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn link_no_clobber(from: &Path, to: &Path) -> io::Result<bool> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Filesystems without hard links (some CIFS mounts): check, then rename. The check and
        // the rename are not atomic together, but only one worker handles a host at a time.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP | libc::EXDEV)) => {
            if to.exists() { Ok(false) } else { fs::rename(from, to).map(|()| true) }
        }
        Err(e) => Err(e),
    }
}

/// Publishes a fully written and fsynced temporary file under `dir/name` without ever
/// overwriting a different file. `sha256` is the hex hash of the temporary file's content.
///
/// # Errors
/// I/O errors; the temporary file is removed in every case.
pub fn publish(temp: &Path, dir: &Path, name: &str, sha256: &str) -> io::Result<Published> {
    let result = publish_inner(temp, dir, name, sha256);
    let _ = fs::remove_file(temp);
    if result.is_ok() {
        fsync_dir(dir)?;
    }
    result
}

fn publish_inner(temp: &Path, dir: &Path, name: &str, sha256: &str) -> io::Result<Published> {
    let final_path = dir.join(name);
    if link_no_clobber(temp, &final_path)? {
        return Ok(Published {
            path: final_path,
            name: name.into(),
            deduplicated: false,
            renamed_for_collision: false,
        });
    }
    if sha256_file(&final_path)? == sha256 {
        return Ok(Published {
            path: final_path,
            name: name.into(),
            deduplicated: true,
            renamed_for_collision: false,
        });
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    let alt = format!("{stem}.{}{ext}", &sha256[..sha256.len().min(12)]);
    let alt_path = dir.join(&alt);
    if link_no_clobber(temp, &alt_path)? || sha256_file(&alt_path)? == sha256 {
        return Ok(Published { path: alt_path, name: alt, deduplicated: false, renamed_for_collision: true });
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} exists with other content", alt_path.display()),
    ))
}

/// Removes temporary files left in `<root>/tmp/*/` by dead daemons of this host (same host
/// name, a pid that is not running). Returns how many were removed.
pub fn sweep_partials(root: &Path) -> io::Result<usize> {
    let tmp = root.join("tmp");
    let Ok(hosts) = fs::read_dir(&tmp) else { return Ok(0) };
    let me = partial_owner_host();
    let mut removed = 0;
    for host in hosts.flatten() {
        let Ok(entries) = fs::read_dir(host.path()) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_suffix(PARTIAL_SUFFIX) else { continue };
            // `.<name>.<host>-<pid>.<task>-<attempt>`
            let mut fields = rest.rsplitn(3, '.');
            let _task = fields.next();
            let Some(owner) = fields.next() else { continue };
            let Some((host_name, pid)) = owner.rsplit_once('-') else { continue };
            let Ok(pid) = pid.parse::<u32>() else { continue };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if host_name == me && !alive && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, b: &[u8]) -> String {
        fs::write(p, b).unwrap();
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn publish_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = partial_path(dir.path(), "a.bin", 1, 1);
        let h1 = write(&t1, b"one");
        let p = publish(&t1, dir.path(), "a.bin", &h1).unwrap();
        assert!(!p.deduplicated && !p.renamed_for_collision);
        assert!(!t1.exists());
        let t2 = partial_path(dir.path(), "a.bin", 1, 2);
        write(&t2, b"one");
        assert!(publish(&t2, dir.path(), "a.bin", &h1).unwrap().deduplicated);
        let t3 = partial_path(dir.path(), "a.bin", 1, 3);
        let h3 = write(&t3, b"two");
        let p = publish(&t3, dir.path(), "a.bin", &h3).unwrap();
        assert!(p.renamed_for_collision);
        assert_eq!(fs::read(dir.path().join("a.bin")).unwrap(), b"one");
        assert_eq!(fs::read(&p.path).unwrap(), b"two");
        assert!(p.name.starts_with("a.") && p.name.ends_with(".bin"));
    }

    #[test]
    fn sweep_removes_only_dead_owners() {
        let root = tempfile::tempdir().unwrap();
        let dir = host_tmp_dir(root.path(), "RFEye002080");
        fs::create_dir_all(&dir).unwrap();
        let mine = partial_path(&dir, "x.bin", 1, 1);
        fs::write(&mine, b"x").unwrap();
        let me = partial_owner_host();
        let dead = dir.join(format!(".y.bin.{me}-999999999.1-1{PARTIAL_SUFFIX}"));
        fs::write(&dead, b"y").unwrap();
        let other = dir.join(format!(".z.bin.otherhost-1.1-1{PARTIAL_SUFFIX}"));
        fs::write(&other, b"z").unwrap();
        assert_eq!(sweep_partials(root.path()).unwrap(), 1);
        assert!(mine.exists() && !dead.exists() && other.exists());
    }

    #[test]
    fn safe_components() {
        assert_eq!(safe_component("../etc"), ".._etc");
        assert_eq!(safe_component(".."), "_..");
        assert_eq!(safe_component("RFEye002080"), "RFEye002080");
        assert_eq!(safe_component("a b/c"), "a_b_c");
    }
}
