//! The station agent `indexerD` (spec §3.1), re-implemented in Rust so that simulated stations
//! behave like real ones.
//!
//! Why: the backup engine reads `DUE_BACKUP` and negotiates `HALT_FLAG` with this agent; tests
//! must run it "on the station" (directly on the station tree, not over SSH), also while a
//! backup is in progress, to reproduce the races of the real system.
//!
//! What it must not do: change anything under `LOCAL_REPO` (it only reads data files), or
//! "fix" the quirks of the original script (an expired flag is removed and the run carries on
//! *without* a flag of its own; the final `rm -f` removes whatever flag exists then).
//!
//! Every path in the configuration is an in-station absolute path; [`run_indexer`] maps it under
//! the station root given by the caller.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// In-station path of the agent configuration.
pub const CFG_PATH: &str = "/etc/node/indexerD.cfg";

/// The `indexerD.cfg` keys, as in-station absolute paths (`HALT_TIMEOUT` in minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerConfig {
    pub local_repo: String,
    pub indexerd_folder: String,
    pub temp_changed: String,
    pub due_backup: String,
    pub backup_done: String,
    pub halt_flag: String,
    pub halt_timeout_minutes: u64,
    pub last_file_search_flag: String,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            local_repo: "/mnt/internal/data".into(),
            indexerd_folder: "/mnt/internal/.indexerD".into(),
            temp_changed: "/mnt/internal/.indexerD/tmp.changed.list".into(),
            due_backup: "/mnt/internal/.indexerD/files.changed.list".into(),
            backup_done: "/mnt/internal/.indexerD/backup.done.list".into(),
            halt_flag: "/mnt/internal/.indexerD/.halt.cookie".into(),
            halt_timeout_minutes: 300,
            last_file_search_flag: "/mnt/internal/.indexerD/.last.file.search.cookie".into(),
        }
    }
}

impl IndexerConfig {
    /// The shell `KEY=VALUE` text written to `/etc/node/indexerD.cfg`.
    pub fn to_cfg_text(&self) -> String {
        format!(
            "LOCAL_REPO={}\nINDEXERD_FOLDER={}\nTEMP_CHANGED={}\nDUE_BACKUP={}\nBACKUP_DONE={}\n\
             HALT_FLAG={}\nHALT_TIMEOUT={}\nLAST_FILE_SEARCH_FLAG={}\n",
            self.local_repo,
            self.indexerd_folder,
            self.temp_changed,
            self.due_backup,
            self.backup_done,
            self.halt_flag,
            self.halt_timeout_minutes,
            self.last_file_search_flag
        )
    }

    /// Parses the shell `KEY=VALUE` form (comments and unknown keys ignored, missing keys keep
    /// their defaults, surrounding quotes stripped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut cfg = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').trim_matches('\'').to_string();
            match key.trim() {
                "LOCAL_REPO" => cfg.local_repo = value,
                "INDEXERD_FOLDER" => cfg.indexerd_folder = value,
                "TEMP_CHANGED" => cfg.temp_changed = value,
                "DUE_BACKUP" => cfg.due_backup = value,
                "BACKUP_DONE" => cfg.backup_done = value,
                "HALT_FLAG" => cfg.halt_flag = value,
                "HALT_TIMEOUT" => {
                    cfg.halt_timeout_minutes =
                        value.parse().map_err(|_| format!("HALT_TIMEOUT is not a number: {value:?}"))?
                }
                "LAST_FILE_SEARCH_FLAG" => cfg.last_file_search_flag = value,
                _ => {}
            }
        }
        Ok(cfg)
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexerOutcome {
    /// A fresh `HALT_FLAG` was present: the run exited without touching anything
    /// (`indexerD Warning: $HALT_FLAG active`).
    Halted,
    /// The run completed.
    Ran {
        /// A stale flag (older than `HALT_TIMEOUT`) was removed and the run went on without a
        /// flag of its own (the original quirk).
        expired_stale_flag: bool,
        /// Files found newer than `LAST_FILE_SEARCH_FLAG` ("files changed since last check").
        changed: usize,
        /// Lines in `DUE_BACKUP` after the merge ("files due for backup").
        due: usize,
    },
}

/// Ownership applied to the files the agent (re)writes in the indexer folder, so that the
/// server's station user can still rename/remove `DUE_BACKUP` and append to `BACKUP_DONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

fn map(root: &Path, in_station: &str) -> PathBuf {
    root.join(in_station.trim_start_matches('/'))
}

fn chown_opt(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    if let Some(o) = owner {
        std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file + rename in the same folder).
fn write_atomic(path: &Path, bytes: &[u8], owner: Option<Owner>) -> io::Result<()> {
    let name =
        path.file_name().ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".indexer-tmp");
    let tmp = path.with_file_name(tmp_name);
    fs::write(&tmp, bytes)?;
    chown_opt(&tmp, owner)?;
    fs::rename(&tmp, path)
}

/// `sort -u` in the C locale: byte order, whole-line uniqueness, every line LF-terminated.
fn sort_unique_lines<'a>(inputs: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, usize) {
    let mut set: BTreeSet<&[u8]> = BTreeSet::new();
    for input in inputs {
        let mut rest = input;
        while !rest.is_empty() {
            let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            set.insert(line);
            rest = tail;
        }
    }
    let count = set.len();
    let mut out = Vec::new();
    for line in set {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    (out, count)
}

/// `find DIR -type f -newer FLAG -printf "%h\0/%f\0\n"`, with in-station `%h`.
fn scan(
    dir_local: &Path,
    dir_in_station: &[u8],
    threshold: SystemTime,
    out: &mut Vec<u8>,
    count: &mut usize,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir_local) {
        Ok(e) => e,
        // `find` reports unreadable folders and carries on.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let ft = entry.file_type()?; // lstat: symlinks are not followed, as with find -P
        let name = entry.file_name();
        if ft.is_dir() {
            let mut sub = dir_in_station.to_vec();
            sub.push(b'/');
            sub.extend_from_slice(name.as_bytes());
            scan(&entry.path(), &sub, threshold, out, count)?;
        } else if ft.is_file() {
            let mtime = entry.metadata()?.modified()?;
            if mtime > threshold {
                out.extend_from_slice(dir_in_station);
                out.push(0);
                out.push(b'/');
                out.extend_from_slice(name.as_bytes());
                out.push(0);
                out.push(b'\n');
                *count += 1;
            }
        }
    }
    Ok(())
}

/// One run of `indexerD.sh` on the station tree rooted at `root` (the chroot), at time `now`.
///
/// Reads the configuration from `root/etc/node/indexerD.cfg`. Files it rewrites in the
/// indexer folder get `owner` (when given).
pub fn run_indexer(root: &Path, now: SystemTime, owner: Option<Owner>) -> io::Result<IndexerOutcome> {
    // 1. Source the cfg; create INDEXERD_FOLDER.
    let text = fs::read_to_string(map(root, CFG_PATH))?;
    let cfg = IndexerConfig::parse(&text).map_err(io::Error::other)?;
    let folder = map(root, &cfg.indexerd_folder);
    if !folder.is_dir() {
        fs::create_dir_all(&folder)?;
        chown_opt(&folder, owner)?;
    }

    // 2. HALT_FLAG: expire a stale one, honour a fresh one, else create our own.
    let flag = map(root, &cfg.halt_flag);
    let mut expired_stale_flag = false;
    match fs::symlink_metadata(&flag) {
        Ok(meta) => {
            let age = now.duration_since(meta.modified()?).unwrap_or(Duration::ZERO);
            // find -mmin +N: more than N whole minutes old.
            if age.as_secs() / 60 > cfg.halt_timeout_minutes {
                remove_if_exists(&flag)?;
                expired_stale_flag = true;
            } else {
                tracing::warn!(flag = %cfg.halt_flag, "indexerD Warning: HALT_FLAG active");
                return Ok(IndexerOutcome::Halted);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = fs::OpenOptions::new().create(true).append(true).open(&flag)?;
            f.set_modified(now)?;
        }
        Err(e) => return Err(e),
    }

    // 3. Remove a leftover TEMP_CHANGED.
    remove_if_exists(&map(root, &cfg.temp_changed))?;

    // 4. LAST_FILE_SEARCH_FLAG at the epoch if missing; DUE_BACKUP created if missing.
    let last = map(root, &cfg.last_file_search_flag);
    if fs::symlink_metadata(&last).is_err() {
        let f = fs::File::create(&last)?;
        f.set_modified(UNIX_EPOCH)?;
    }
    let due_path = map(root, &cfg.due_backup);
    if fs::symlink_metadata(&due_path).is_err() {
        fs::File::create(&due_path)?;
        chown_opt(&due_path, owner)?;
    }

    // 5. The timestamp is taken before the scan, at whole-second resolution (`date +%S`).
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let timestamp = UNIX_EPOCH + Duration::from_secs(secs);

    // 6. Scan LOCAL_REPO.
    let threshold = fs::metadata(&last)?.modified()?;
    let mut changed_lines = Vec::new();
    let mut changed = 0usize;
    scan(
        &map(root, &cfg.local_repo),
        cfg.local_repo.as_bytes(),
        threshold,
        &mut changed_lines,
        &mut changed,
    )?;

    // 7. sort -u merge into DUE_BACKUP.
    let old_due = fs::read(&due_path)?;
    let (merged, due) = sort_unique_lines([changed_lines.as_slice(), old_due.as_slice()]);
    write_atomic(&due_path, &merged, owner)?;
    tracing::info!("indexerD Info: {changed} files changed since last check");
    tracing::info!("indexerD Info: {due} files due for backup");

    // 9. Move LAST_FILE_SEARCH_FLAG to the pre-scan timestamp.
    fs::OpenOptions::new().write(true).open(&last)?.set_modified(timestamp)?;

    // 10. De-duplicate BACKUP_DONE (sort fails on a missing file, and nothing is created).
    let done_path = map(root, &cfg.backup_done);
    if let Ok(done) = fs::read(&done_path) {
        let (sorted, _) = sort_unique_lines([done.as_slice()]);
        write_atomic(&done_path, &sorted, owner)?;
    }

    // 11. rm -f HALT_FLAG.
    remove_if_exists(&flag)?;
    Ok(IndexerOutcome::Ran { expired_stale_flag, changed, due })
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_unique_is_bytewise_and_terminates_lines() {
        let (out, n) = sort_unique_lines([b"b\0/x\0\na\0/y\0\n".as_slice(), b"b\0/x\0".as_slice()]);
        assert_eq!(n, 2);
        assert_eq!(out, b"a\0/y\0\nb\0/x\0\n");
    }

    #[test]
    fn cfg_round_trip() {
        let cfg = IndexerConfig::default();
        assert_eq!(IndexerConfig::parse(&cfg.to_cfg_text()).unwrap(), cfg);
    }
}
