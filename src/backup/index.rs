//! What the station tells us, parsed without trusting it: `indexerD.cfg`, `DUE_BACKUP`, and
//! the content of our `HALT_FLAG`. Pure: no I/O.
//!
//! The station is an untrusted peer (rsync's 2025 CVEs were a malicious *server* writing
//! outside the destination). Every path listed in `DUE_BACKUP` is parsed into components and
//! must resolve strictly inside the station's `LOCAL_REPO`: `..`, absolute escapes, control
//! characters, NULs inside names, empty and over-long names are rejected, each with a reason,
//! and a rejected line never stops the other lines. Sizes are capped before anything is
//! allocated from peer data.

use std::collections::BTreeSet;

/// Longest file name accepted (bytes), as most filesystems.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest path accepted (bytes).
pub const MAX_PATH_BYTES: usize = 3000;

/// The station's indexer configuration (`/etc/node/indexerD.cfg`, shell `KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationConfig {
    /// Station data folder; every backed-up file must be inside it.
    pub local_repo: String,
    /// The index of files due for backup.
    pub due_backup: String,
    /// Where copied paths are appended.
    pub backup_done: String,
    /// The lock file.
    pub halt_flag: String,
    /// The station's indexer removes flags older than this many minutes.
    pub halt_timeout_minutes: u64,
}

/// A problem with the station configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StationConfigError {
    /// A required key is absent.
    #[error("station config lacks {0}")]
    Missing(&'static str),
    /// A path is not absolute or not clean.
    #[error("station config {key} is not a clean absolute path: {value:?}")]
    BadPath {
        /// Key.
        key: &'static str,
        /// Value (escaped).
        value: String,
    },
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v)
}

fn clean_absolute(key: &'static str, value: &str) -> Result<String, StationConfigError> {
    let ok = value.starts_with('/')
        && value.len() <= MAX_PATH_BYTES
        && !value.chars().any(char::is_control)
        && value.split('/').all(|c| c != ".." && c != ".");
    if ok {
        Ok(value.trim_end_matches('/').to_string()).map(|s| if s.is_empty() { "/".into() } else { s })
    } else {
        Err(StationConfigError::BadPath { key, value: value.escape_debug().take(200).collect() })
    }
}

/// Parses `indexerD.cfg`: `KEY=VALUE` lines (first `=` splits, so values may contain `=`),
/// comments and blank lines ignored, optional quotes removed.
///
/// # Errors
/// [`StationConfigError`] when a needed key is missing or a path is not clean.
pub fn parse_station_config(text: &str) -> Result<StationConfig, StationConfigError> {
    let mut get = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            get.insert(k.trim().to_string(), unquote(v).to_string());
        }
    }
    let req = |k: &'static str| get.get(k).cloned().ok_or(StationConfigError::Missing(k));
    Ok(StationConfig {
        local_repo: clean_absolute("LOCAL_REPO", &req("LOCAL_REPO")?)?,
        due_backup: clean_absolute("DUE_BACKUP", &req("DUE_BACKUP")?)?,
        backup_done: clean_absolute("BACKUP_DONE", &req("BACKUP_DONE")?)?,
        halt_flag: clean_absolute("HALT_FLAG", &req("HALT_FLAG")?)?,
        halt_timeout_minutes: get
            .get("HALT_TIMEOUT")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| v as u64)
            .unwrap_or(300),
    })
}

/// One accepted entry of `DUE_BACKUP`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueFile {
    /// Absolute directory on the station (inside `LOCAL_REPO`).
    pub dir: String,
    /// File name.
    pub name: String,
}

impl DueFile {
    /// `dir/name`.
    pub fn remote_path(&self) -> String {
        format!("{}/{}", self.dir, self.name)
    }
}

/// One refused line of `DUE_BACKUP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 1-based line number.
    pub line: usize,
    /// The line, escaped and truncated for storage and logs.
    pub text: String,
    /// Why it was refused.
    pub reason: String,
}

/// The parsed index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueIndex {
    /// Accepted files, de-duplicated, in order.
    pub files: Vec<DueFile>,
    /// Refused lines.
    pub rejected: Vec<RejectedLine>,
    /// Lines beyond the line cap (not read).
    pub truncated_lines: usize,
}

fn escaped(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().flat_map(char::escape_debug).take(max).collect();
    if text.chars().flat_map(char::escape_debug).count() > max {
        out.push('…');
    }
    out
}

/// Parses `DUE_BACKUP` (`<dir>\0/<name>\0\n` lines, or plain one path per line), accepting only
/// paths strictly inside `local_repo`. At most `max_lines` lines are considered.
pub fn parse_due_backup(bytes: &[u8], local_repo: &str, max_lines: usize) -> DueIndex {
    let mut index = DueIndex::default();
    let mut seen = BTreeSet::new();
    let base = local_repo.trim_end_matches('/');
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        if i >= max_lines {
            index.truncated_lines += 1;
            continue;
        }
        let reject =
            |reason: &str| RejectedLine { line: i + 1, text: escaped(raw, 300), reason: reason.into() };
        // The indexer's form is `<dir>\0/<name>\0`: NULs may only separate those two parts.
        let joined: Vec<u8> = match raw.iter().filter(|b| **b == 0).count() {
            0 => raw.to_vec(),
            1 | 2 => {
                let mut parts = raw.split(|b| *b == 0);
                let dir = parts.next().unwrap_or_default();
                let name = parts.next().unwrap_or_default();
                if parts.next().is_some_and(|rest| !rest.is_empty()) || !name.starts_with(b"/") {
                    index.rejected.push(reject("malformed entry: NUL inside a name"));
                    continue;
                }
                [dir, name].concat()
            }
            _ => {
                index.rejected.push(reject("malformed entry: NUL inside a name"));
                continue;
            }
        };
        let Ok(path) = std::str::from_utf8(&joined) else {
            index.rejected.push(reject("path is not valid UTF-8"));
            continue;
        };
        match validate_inside(path, base) {
            Ok(file) => {
                if seen.insert(file.clone()) {
                    index.files.push(file);
                }
            }
            Err(reason) => index.rejected.push(reject(&reason)),
        }
    }
    index
}

/// Checks that `path` names a file strictly inside `base` and splits it into dir and name.
///
/// # Errors
/// The reason, worded for the operator.
pub fn validate_inside(path: &str, base: &str) -> Result<DueFile, String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("path longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.chars().any(char::is_control) {
        return Err("path contains control characters".into());
    }
    if path.contains('\\') {
        return Err("path contains a backslash".into());
    }
    if !path.starts_with('/') {
        return Err(format!("path is not absolute (must be inside {base})"));
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("path contains '..'".into()),
            c if c.len() > MAX_NAME_BYTES => {
                return Err(format!("a name is longer than {MAX_NAME_BYTES} bytes"));
            }
            c => parts.push(c),
        }
    }
    let base_parts: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    if parts.len() <= base_parts.len() || parts[..base_parts.len()] != base_parts[..] {
        return Err(format!("path is outside the station data folder {base}"));
    }
    let name = parts.pop().unwrap_or_default().to_string();
    Ok(DueFile { dir: format!("/{}", parts.join("/")), name })
}

/// The content we write into `HALT_FLAG`: who holds it, for which task and attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagOwner {
    /// Daemon instance id.
    pub instance: String,
    /// `HOST_TASK` id.
    pub task_id: i64,
    /// Claim attempt (fencing token).
    pub attempt: u32,
}

const FLAG_MAGIC: &str = "appcataloga-halt-flag v1";

impl FlagOwner {
    /// Renders the flag file content.
    pub fn render(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        format!(
            "{FLAG_MAGIC}\ninstance={}\ntask={}\nattempt={}\nsince={}\n",
            self.instance,
            self.task_id,
            self.attempt,
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }

    /// Parses a flag file; `None` when it is not one of ours (the station's own flag is empty).
    pub fn parse(content: &[u8]) -> Option<FlagOwner> {
        let text = std::str::from_utf8(content.get(..content.len().min(1024))?).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FLAG_MAGIC {
            return None;
        }
        let mut instance = None;
        let mut task_id = None;
        let mut attempt = None;
        for line in lines {
            match line.split_once('=') {
                Some(("instance", v)) => instance = Some(v.to_string()),
                Some(("task", v)) => task_id = v.parse().ok(),
                Some(("attempt", v)) => attempt = v.parse().ok(),
                _ => {}
            }
        }
        Some(FlagOwner { instance: instance?, task_id: task_id?, attempt: attempt? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "LOCAL_REPO=/mnt/internal/data\nINDEXERD_FOLDER=/mnt/internal/.indexerD\n\
        DUE_BACKUP=/mnt/internal/.indexerD/files.changed.list\nBACKUP_DONE=/mnt/internal/.indexerD/backup.done.list\n\
        HALT_FLAG=/mnt/internal/.indexerD/.halt.cookie\nHALT_TIMEOUT=300\n# comment\n";

    #[test]
    fn station_config() {
        let c = parse_station_config(CFG).unwrap();
        assert_eq!(c.local_repo, "/mnt/internal/data");
        assert_eq!(c.halt_timeout_minutes, 300);
        assert!(matches!(parse_station_config("LOCAL_REPO=/x"), Err(StationConfigError::Missing(_))));
        let bad = CFG.replace("LOCAL_REPO=/mnt/internal/data", "LOCAL_REPO=/mnt/../etc");
        assert!(matches!(parse_station_config(&bad), Err(StationConfigError::BadPath { .. })));
    }

    #[test]
    fn due_backup_forms_and_hostile_lines() {
        let base = "/mnt/internal/data";
        let input = b"/mnt/internal/data\0/a.bin\0\n/mnt/internal/data/sub\0/b.bin\0\n/mnt/internal/data/c.bin\n\
            /mnt/internal/data\0/a.bin\0\n../../etc/passwd\n/etc/shadow\n/mnt/internal/data/../../etc/passwd\n\
            /mnt/internal/data\0/x\0y\0\n/mnt/internal/data/t\x01ab\nC:\\Windows\\win.ini\n/mnt/internal/database/x\n\
            /mnt/internal/data\n\n/mnt/internal/data/\xff.bin\n";
        let idx = parse_due_backup(input, base, 1000);
        assert_eq!(
            idx.files,
            vec![
                DueFile { dir: base.into(), name: "a.bin".into() },
                DueFile { dir: format!("{base}/sub"), name: "b.bin".into() },
                DueFile { dir: base.into(), name: "c.bin".into() },
            ]
        );
        assert_eq!(idx.rejected.len(), 9, "{:#?}", idx.rejected);
        assert!(idx.rejected.iter().all(|r| !r.reason.is_empty()));
        let capped = parse_due_backup(input, base, 2);
        assert_eq!(capped.files.len(), 2);
        assert!(capped.truncated_lines > 0);
    }

    #[test]
    fn flag_content_roundtrip() {
        let o = FlagOwner { instance: "h:1:20260101T000000Z".into(), task_id: 7, attempt: 3 };
        let text = o.render(chrono::Utc::now());
        assert_eq!(FlagOwner::parse(text.as_bytes()), Some(o));
        assert_eq!(FlagOwner::parse(b""), None);
        assert_eq!(FlagOwner::parse(b"garbage\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn accepted_paths_are_inside_the_base(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let idx = parse_due_backup(&bytes, "/mnt/internal/data", 100);
            for f in idx.files {
                let p = f.remote_path();
                proptest::prop_assert!(p.starts_with("/mnt/internal/data/"));
                proptest::prop_assert!(!p.split('/').any(|c| c == ".."));
            }
        }
    }
}
