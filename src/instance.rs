//! Identity of this daemon process: `hostname:pid:start`, recorded on everything it claims.
//!
//! Several daemons may share one database; the id tells whose lease a row holds and lets a
//! restarted daemon recognise claims of its own dead predecessors on the same host.

use std::fmt;

/// `hostname:pid:YYYYmmddTHHMMSSZ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    /// Machine name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Start time (UTC).
    pub started: chrono::DateTime<chrono::Utc>,
}

impl InstanceId {
    /// The id of the running process.
    pub fn current() -> InstanceId {
        InstanceId { hostname: hostname(), pid: std::process::id(), started: chrono::Utc::now() }
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.hostname, self.pid, self.started.format("%Y%m%dT%H%M%SZ"))
    }
}

/// The kernel's host name, or `localhost` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
