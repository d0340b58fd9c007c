//! SSH/SFTP client layer of the backup engine: one authenticated SFTP session per station, over
//! russh + russh-sftp, with host-key pinning, typed errors and a pipelined, hashing download.
//!
//! Why: the engine needs a small, testable surface (stat, read a small file, create a flag
//! exclusively, rename, append, download with SHA-256) whose errors say whether to retry.
//!
//! Security rules (reliability anchors F29–F31):
//! * The server's host key is checked in `check_server_key`, *before* any authentication
//!   message is sent: a mismatch or an unknown key under [`HostKeyPolicy::Strict`] aborts the
//!   key exchange, so no password or key signature ever reaches an impostor. Keys are never
//!   accepted unconditionally; [`HostKeyPolicy::AcceptNew`] pins only when no pin exists and
//!   reports it through [`Remote::newly_pinned`] so the caller stores it.
//! * Passwords live in [`SecretString`] and are never logged or put in error messages.
//!
//! Performance: AES-GCM is preferred (CTR+HMAC is several times slower in russh); downloads keep
//! `max_inflight_reads` requests of `read_chunk` bytes outstanding, and the local write/hash of a
//! chunk overlaps with the network transfer of the following ones.
//!
//! What it must not do: change data files on the station (only the caller decides which paths it
//! writes), fsync or rename local files (the caller owns the local commit protocol), allocate
//! more than the caller's cap in [`Remote::read_to_vec`], or retry anything by itself.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use russh::client::{AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Data, FileAttributes, FileType, OpenFlags, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Tuning and time limits of one connection.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Absolute deadline for TCP connect + key exchange + authentication + SFTP start.
    pub connect_timeout: Duration,
    /// A connection (and every single SFTP request) with nothing received for this long fails.
    pub inactivity_timeout: Duration,
    /// Send an SSH keepalive after this long without traffic from the server.
    pub keepalive_interval: Duration,
    /// Close the connection after this many unanswered keepalives.
    pub keepalive_max: usize,
    /// Bytes asked per SFTP read (clamped to the server's `limits@openssh.com`).
    pub read_chunk: u32,
    /// SFTP read requests kept outstanding during a download (`read_chunk × this` bytes in
    /// flight cap the throughput at `in-flight / RTT`).
    pub max_inflight_reads: usize,
    /// SSH channel window we advertise. russh tops it up only when it falls below half, so it
    /// must be about twice the bytes in flight or it becomes the cap (`window / 2 / RTT`).
    pub window_size: u32,
}

impl Default for SshOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(20),
            inactivity_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 3,
            read_chunk: 256 * 1024,
            max_inflight_reads: 32,
            window_size: 16 * 1024 * 1024,
        }
    }
}

/// How to treat the server's host key when no pin matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Trust on first use: with no pin, accept and report it as newly pinned. A pin that does
    /// not match is always refused.
    AcceptNew,
    /// The key must match [`ConnectParams::pinned_fingerprint`]; no pin = refused.
    Strict,
    /// The key must be listed for `[host]:port` in this OpenSSH `known_hosts` file (and match
    /// the pin too, when one is given).
    KnownHostsFile(PathBuf),
}

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    Password(SecretString),
    /// An unencrypted OpenSSH private key file.
    KeyFile(PathBuf),
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// `SHA256:…` (as `ssh-keygen -l -E sha256`) pinned for this station, if any.
    pub pinned_fingerprint: Option<String>,
    pub policy: HostKeyPolicy,
}

/// Kind of a remote file system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `lstat` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteStat {
    pub size: u64,
    /// Unix seconds (0 when the server did not send it).
    pub mtime: i64,
    pub kind: RemoteKind,
}

/// Result of [`Remote::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

impl Download {
    /// Lower-case hex SHA-256.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Errors of the SSH/SFTP layer. Every variant names the station (`host:port`).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {target}: {source}; check that the station is up and reachable")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: {stage} timed out after {after:?}")]
    Timeout { target: String, stage: String, after: Duration },
    #[error(
        "host key of {target} changed: pinned {expected}, got {got}; refused before \
         authentication. If the station was reinstalled, re-trust it with \
         `appcataloga hosts trust-key <id>`; otherwise suspect a man in the middle"
    )]
    HostKeyMismatch { target: String, expected: String, got: String },
    #[error(
        "host key of {target} is not trusted ({got}); refused before authentication. Enroll it \
         with `appcataloga hosts trust-key <id>` after checking the fingerprint on the station"
    )]
    HostKeyUnknown { target: String, got: String },
    #[error("cannot check the host key of {target}: {detail}")]
    HostKeyCheck { target: String, detail: String },
    #[error(
        "authentication of {user}@{target} by {method} failed; fix the station's credentials \
         (no automatic retry)"
    )]
    AuthFailed { target: String, user: String, method: &'static str },
    #[error("cannot use private key {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    #[error("{target}: connection lost: {detail}")]
    Disconnected { target: String, detail: String },
    #[error("{target}: {path}: no such file")]
    NotFound { target: String, path: String },
    #[error("{target}: {path}: permission denied")]
    PermissionDenied { target: String, path: String },
    #[error("{target}: {path}: already exists")]
    AlreadyExists { target: String, path: String },
    #[error("{target}: {path}: larger than the limit of {limit} bytes")]
    TooLarge { target: String, path: String, limit: u64 },
    #[error("{target}: SFTP {op} {path} failed: {code:?}: {message}")]
    Sftp { target: String, op: &'static str, path: String, code: StatusCode, message: String },
    #[error("{target}: SSH protocol error: {detail}")]
    Protocol { target: String, detail: String },
    #[error("local I/O while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Worth retrying later with backoff (network, timeouts, lost connections, local I/O).
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { .. }
            | SshError::Timeout { .. }
            | SshError::Disconnected { .. }
            | SshError::Io { .. } => true,
            SshError::Sftp { code, .. } => {
                matches!(code, StatusCode::NoConnection | StatusCode::ConnectionLost)
            }
            _ => false,
        }
    }

    /// Needs a human (or a changed station) before trying again: host key, credentials,
    /// missing/forbidden/oversized files, protocol failures.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// Errors inside the russh event loop (our handler's type).
impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        russh_err(String::new(), e)
    }
}

fn russh_err(target: String, e: russh::Error) -> SshError {
    use russh::Error as E;
    match e {
        E::IO(io) => SshError::Disconnected { target, detail: io.to_string() },
        E::ConnectionTimeout | E::KeepaliveTimeout | E::InactivityTimeout => {
            SshError::Timeout { target, stage: e.to_string(), after: Duration::ZERO }
        }
        E::HUP | E::Disconnect | E::SendError | E::RecvError => {
            SshError::Disconnected { target, detail: e.to_string() }
        }
        other => SshError::Protocol { target, detail: other.to_string() },
    }
}

/// Fills in the target of an error produced inside the event loop (which does not know it).
fn with_target(e: SshError, t: &str) -> SshError {
    let fix = |target: String| if target.is_empty() { t.to_string() } else { target };
    match e {
        SshError::Disconnected { target, detail } => SshError::Disconnected { target: fix(target), detail },
        SshError::Timeout { target, stage, after } => SshError::Timeout { target: fix(target), stage, after },
        SshError::Protocol { target, detail } => SshError::Protocol { target: fix(target), detail },
        other => other,
    }
}

/// The russh client handler: only the host-key decision.
struct KeyChecker {
    target: String,
    host: String,
    port: u16,
    pinned: Option<String>,
    policy: HostKeyPolicy,
    /// Set once the key is accepted: (fingerprint, newly pinned).
    accepted: Arc<std::sync::Mutex<Option<(String, bool)>>>,
}

impl KeyChecker {
    fn decide(&self, key: &russh::keys::PublicKey) -> Result<bool, SshError> {
        let got = key.fingerprint(HashAlg::Sha256).to_string();
        if let Some(pin) = self.pinned.as_deref().map(str::trim)
            && pin != got
        {
            return Err(SshError::HostKeyMismatch {
                target: self.target.clone(),
                expected: pin.to_string(),
                got,
            });
        }
        let newly = match &self.policy {
            HostKeyPolicy::AcceptNew => self.pinned.is_none(),
            HostKeyPolicy::Strict => {
                if self.pinned.is_none() {
                    return Err(SshError::HostKeyUnknown { target: self.target.clone(), got });
                }
                false
            }
            HostKeyPolicy::KnownHostsFile(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => false,
                    Ok(false) => {
                        return Err(SshError::HostKeyUnknown { target: self.target.clone(), got });
                    }
                    Err(russh::keys::Error::KeyChanged { line }) => {
                        return Err(SshError::HostKeyMismatch {
                            target: self.target.clone(),
                            expected: format!("the key at {}:{line}", path.display()),
                            got,
                        });
                    }
                    Err(e) => {
                        return Err(SshError::HostKeyCheck {
                            target: self.target.clone(),
                            detail: format!("{}: {e}", path.display()),
                        });
                    }
                }
            }
        };
        if let Ok(mut slot) = self.accepted.lock() {
            *slot = Some((got, newly));
        }
        Ok(true)
    }
}

impl russh::client::Handler for KeyChecker {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.decide(key),
            // We never advertise certificate algorithms; refuse rather than guess a CA policy.
            PublicKeyOrCertificate::Certificate(_) => Err(SshError::HostKeyCheck {
                target: self.target.clone(),
                detail: "the server presented a host certificate; only pinned keys are supported".into(),
            }),
        }
    }
}

/// An authenticated SFTP session with one station.
pub struct Remote {
    handle: Handle<KeyChecker>,
    sftp: RawSftpSession,
    target: String,
    fingerprint: String,
    newly_pinned: bool,
    read_chunk: u32,
    write_chunk: usize,
    max_inflight: usize,
}

const SFTP_OVERHEAD: u32 = 1024;

/// Connects, checks the host key, authenticates and starts SFTP, all within
/// `opts.connect_timeout`.
pub async fn connect(params: &ConnectParams, opts: &SshOptions) -> Result<Remote, SshError> {
    let target = format!("{}:{}", params.host, params.port);
    match tokio::time::timeout(opts.connect_timeout, connect_inner(params, opts, &target)).await {
        Ok(r) => r.map_err(|e| with_target(e, &target)),
        Err(_) => Err(SshError::Timeout {
            target,
            stage: "connect (TCP, key exchange, authentication, SFTP start)".into(),
            after: opts.connect_timeout,
        }),
    }
}

async fn connect_inner(params: &ConnectParams, opts: &SshOptions, target: &str) -> Result<Remote, SshError> {
    // Read the key file first: a bad key is a local, permanent problem.
    let key = match &params.auth {
        Auth::KeyFile(path) => {
            let p = path.clone();
            let key = tokio::task::spawn_blocking(move || russh::keys::load_secret_key(&p, None))
                .await
                .map_err(|e| SshError::KeyFile { path: path.clone(), detail: e.to_string() })?
                .map_err(|e| SshError::KeyFile { path: path.clone(), detail: e.to_string() })?;
            Some(Arc::new(key))
        }
        Auth::Password(_) => None,
    };

    let stream = tokio::net::TcpStream::connect((params.host.as_str(), params.port))
        .await
        .map_err(|source| SshError::Connect { target: target.to_string(), source })?;
    let _ = stream.set_nodelay(true);

    let mut ciphers: Vec<russh::cipher::Name> =
        vec![russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM, russh::cipher::CHACHA20_POLY1305];
    for c in russh::Preferred::DEFAULT.cipher.iter() {
        if !ciphers.contains(c) {
            ciphers.push(*c);
        }
    }
    let config = russh::client::Config {
        window_size: opts.window_size,
        inactivity_timeout: Some(opts.inactivity_timeout),
        keepalive_interval: Some(opts.keepalive_interval),
        keepalive_max: opts.keepalive_max,
        nodelay: true,
        // Fewer, larger SSH packets: less per-packet work in russh (OpenSSH accepts up to 256 KiB
        // and sends at most what we allow).
        maximum_packet_size: 65535,
        preferred: russh::Preferred { cipher: Cow::Owned(ciphers), ..russh::Preferred::DEFAULT },
        ..Default::default()
    };
    let accepted = Arc::new(std::sync::Mutex::new(None));
    let checker = KeyChecker {
        target: target.to_string(),
        host: params.host.clone(),
        port: params.port,
        pinned: params.pinned_fingerprint.clone(),
        policy: params.policy.clone(),
        accepted: accepted.clone(),
    };
    let mut handle = russh::client::connect_stream(Arc::new(config), stream, checker).await?;
    let (fingerprint, newly_pinned) =
        accepted.lock().ok().and_then(|g| g.clone()).ok_or_else(|| SshError::Protocol {
            target: target.to_string(),
            detail: "key exchange finished without a host-key decision".into(),
        })?;

    let (result, method) = match (&params.auth, key) {
        (Auth::Password(pw), _) => (
            handle
                .authenticate_password(params.user.as_str(), pw.expose_secret())
                .await
                .map_err(|e| russh_err(target.to_string(), e))?,
            "password",
        ),
        (Auth::KeyFile(_), Some(key)) => {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| russh_err(target.to_string(), e))?
                .flatten();
            (
                handle
                    .authenticate_publickey(params.user.as_str(), PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(|e| russh_err(target.to_string(), e))?,
                "public key",
            )
        }
        (Auth::KeyFile(path), None) => {
            return Err(SshError::KeyFile { path: path.clone(), detail: "not loaded".into() });
        }
    };
    if !matches!(result, AuthResult::Success) {
        return Err(SshError::AuthFailed { target: target.to_string(), user: params.user.clone(), method });
    }

    let channel = handle.channel_open_session().await.map_err(|e| russh_err(target.to_string(), e))?;
    channel.request_subsystem(true, "sftp").await.map_err(|e| russh_err(target.to_string(), e))?;
    let cfg = russh_sftp::client::Config {
        max_packet_len: opts.read_chunk.max(32 * 1024) + SFTP_OVERHEAD,
        max_concurrent_reads: opts.max_inflight_reads.max(1),
        request_timeout_secs: opts.inactivity_timeout.as_secs().max(1),
        ..Default::default()
    };
    let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), cfg);
    let version = sftp.init().await.map_err(|e| sftp_err(target, "init", "", e))?;
    let mut read_chunk = opts.read_chunk.max(1024);
    let mut write_chunk: usize = 32 * 1024;
    if version.extensions.get(russh_sftp::extensions::LIMITS).is_some_and(|v| v == "1") {
        let limits = sftp.limits().await.map_err(|e| sftp_err(target, "limits", "", e))?;
        if limits.max_read_len > 0 {
            read_chunk = read_chunk.min(u32::try_from(limits.max_read_len).unwrap_or(u32::MAX));
        }
        if limits.max_write_len > 0 {
            write_chunk = write_chunk.min(usize::try_from(limits.max_write_len).unwrap_or(usize::MAX));
        }
        sftp.set_limits(limits.into());
    }
    tracing::debug!(%target, %fingerprint, newly_pinned, read_chunk, "SFTP session ready");
    Ok(Remote {
        handle,
        sftp,
        target: target.to_string(),
        fingerprint,
        newly_pinned,
        read_chunk,
        write_chunk,
        max_inflight: opts.max_inflight_reads.max(1),
    })
}

fn sftp_err(target: &str, op: &'static str, path: &str, e: SftpError) -> SshError {
    let target = target.to_string();
    let path = path.to_string();
    match e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => SshError::NotFound { target, path },
            StatusCode::PermissionDenied => SshError::PermissionDenied { target, path },
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                SshError::Disconnected { target, detail: format!("{op} {path}: {}", s.error_message) }
            }
            code => SshError::Sftp { target, op, path, code, message: s.error_message },
        },
        SftpError::Timeout => {
            SshError::Timeout { target, stage: format!("SFTP {op} {path}"), after: Duration::ZERO }
        }
        SftpError::IO(detail) => SshError::Disconnected { target, detail },
        SftpError::UnexpectedBehavior(detail) if detail.contains("closed") => {
            SshError::Disconnected { target, detail }
        }
        other => SshError::Protocol { target, detail: format!("SFTP {op} {path}: {other}") },
    }
}

type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Data, SftpError>> + Send + 'a>>;

/// One outstanding read.
struct Pending<'a> {
    offset: u64,
    len: u32,
    fut: ReadFuture<'a>,
    done: Option<Result<Data, SftpError>>,
}

/// Polls every outstanding read (which sends the not-yet-sent ones); returns whether the oldest
/// one has completed.
fn poll_all(queue: &mut VecDeque<Pending<'_>>, cx: &mut std::task::Context<'_>) -> bool {
    for p in queue.iter_mut() {
        if p.done.is_none()
            && let Poll::Ready(r) = p.fut.as_mut().poll(cx)
        {
            p.done = Some(r);
        }
    }
    queue.front().is_some_and(|p| p.done.is_some())
}

impl Remote {
    /// `host:port` of the station.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `SHA256:…` fingerprint of the server's host key (same text as `ssh-keygen -l -E sha256`).
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `true` when [`HostKeyPolicy::AcceptNew`] trusted the key on this connect because no pin
    /// existed: the caller must store [`Remote::host_key_fingerprint`] as the pin.
    pub fn newly_pinned(&self) -> bool {
        self.newly_pinned
    }

    /// The read size in use (after the server's limits).
    pub fn read_chunk(&self) -> u32 {
        self.read_chunk
    }

    fn err(&self, op: &'static str, path: &str, e: SftpError) -> SshError {
        sftp_err(&self.target, op, path, e)
    }

    /// `lstat` (does not follow a final symlink); `None` if the path does not exist.
    pub async fn lstat(&self, path: &str) -> Result<Option<RemoteStat>, SshError> {
        match self.sftp.lstat(path).await {
            Ok(a) => Ok(Some(to_stat(&a.attrs))),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(self.err("lstat", path, e)),
        }
    }

    /// Canonical absolute form of `path` on the server.
    pub async fn realpath(&self, path: &str) -> Result<String, SshError> {
        let name = self.sftp.realpath(path).await.map_err(|e| self.err("realpath", path, e))?;
        name.files.into_iter().next().map(|f| f.filename).ok_or_else(|| SshError::Protocol {
            target: self.target.clone(),
            detail: format!("realpath {path}: empty reply"),
        })
    }

    async fn open(&self, path: &str, flags: OpenFlags, op: &'static str) -> Result<String, SshError> {
        self.sftp
            .open(path, flags, FileAttributes::empty())
            .await
            .map(|h| h.handle)
            .map_err(|e| self.err(op, path, e))
    }

    async fn close_handle(&self, handle: String, path: &str) -> Result<(), SshError> {
        self.sftp.close(handle).await.map(|_| ()).map_err(|e| self.err("close", path, e))
    }

    /// Reads a whole (small) file; `None` if it does not exist; [`SshError::TooLarge`] when it
    /// has more than `max_bytes` bytes (never buffers more than the cap plus one read).
    pub async fn read_to_vec(&self, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, SshError> {
        let handle = match self.sftp.open(path, OpenFlags::READ, FileAttributes::empty()).await {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Ok(None);
            }
            Err(e) => return Err(self.err("open", path, e)),
        };
        let res = self.read_handle_capped(&handle, path, max_bytes).await;
        let closed = self.close_handle(handle, path).await;
        let data = res?;
        closed?;
        Ok(Some(data))
    }

    async fn read_handle_capped(
        &self,
        handle: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SshError> {
        let too_large =
            || SshError::TooLarge { target: self.target.clone(), path: path.to_string(), limit: max_bytes };
        let size_hint = match self.sftp.fstat(handle).await {
            Ok(a) => a.attrs.size.unwrap_or(0),
            Err(e) => return Err(self.err("fstat", path, e)),
        };
        if size_hint > max_bytes {
            return Err(too_large());
        }
        let mut out = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0));
        loop {
            // Ask for one byte beyond the cap, to detect growth past it.
            let want = (max_bytes + 1 - out.len() as u64).min(u64::from(self.read_chunk)) as u32;
            match self.sftp.read(handle, out.len() as u64, want).await {
                Ok(d) if d.data.is_empty() => break,
                Ok(d) => {
                    if out.len() as u64 + d.data.len() as u64 > max_bytes {
                        return Err(too_large());
                    }
                    out.extend_from_slice(&d.data);
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break,
                Err(e) => return Err(self.err("read", path, e)),
            }
        }
        Ok(out)
    }

    async fn write_all_handle(
        &self,
        handle: &str,
        path: &str,
        mut offset: u64,
        contents: &[u8],
    ) -> Result<(), SshError> {
        for chunk in contents.chunks(self.write_chunk.max(1)) {
            self.sftp.write(handle, offset, chunk.to_vec()).await.map_err(|e| self.err("write", path, e))?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    async fn write_with_flags(
        &self,
        path: &str,
        flags: OpenFlags,
        op: &'static str,
        contents: &[u8],
    ) -> Result<(), SshError> {
        let handle = self.open(path, flags, op).await?;
        let res = self.write_all_handle(&handle, path, 0, contents).await;
        let closed = self.close_handle(handle, path).await;
        res?;
        closed
    }

    /// Creates `path` only if it does not exist (SFTP `CREATE|EXCL|WRITE`) and writes
    /// `contents`; `Ok(false)` if it already existed (left untouched).
    pub async fn create_exclusive(&self, path: &str, contents: &[u8]) -> Result<bool, SshError> {
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
        let handle = match self.sftp.open(path, flags, FileAttributes::empty()).await {
            Ok(h) => h.handle,
            // SFTP v3 has no "already exists" status: OpenSSH answers FAILURE for EEXIST.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Failure => {
                if self.lstat(path).await?.is_some() {
                    return Ok(false);
                }
                return Err(self.err("create", path, SftpError::Status(s)));
            }
            Err(e) => return Err(self.err("create", path, e)),
        };
        let res = self.write_all_handle(&handle, path, 0, contents).await;
        let closed = self.close_handle(handle, path).await;
        res?;
        closed?;
        Ok(true)
    }

    /// Creates or truncates `path` and writes `contents`.
    pub async fn overwrite(&self, path: &str, contents: &[u8]) -> Result<(), SshError> {
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        self.write_with_flags(path, flags, "overwrite", contents).await
    }

    /// Appends `contents` to `path` (created if missing). The server appends at the end of file
    /// (`O_APPEND`) whatever offset is sent.
    pub async fn append(&self, path: &str, contents: &[u8]) -> Result<(), SshError> {
        let flags = OpenFlags::CREATE | OpenFlags::APPEND | OpenFlags::WRITE;
        self.write_with_flags(path, flags, "append", contents).await
    }

    /// Renames `from` to `to`. SFTP v3 semantics: it **fails** if `to` already exists
    /// ([`SshError::AlreadyExists`]); it never replaces a file.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), SshError> {
        match self.sftp.rename(from, to).await {
            Ok(_) => Ok(()),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Failure => {
                if self.lstat(to).await?.is_some() {
                    return Err(SshError::AlreadyExists {
                        target: self.target.clone(),
                        path: to.to_string(),
                    });
                }
                Err(self.err("rename", from, SftpError::Status(s)))
            }
            Err(e) => Err(self.err("rename", from, e)),
        }
    }

    /// Removes a file (not a folder).
    pub async fn remove(&self, path: &str) -> Result<(), SshError> {
        self.sftp.remove(path).await.map(|_| ()).map_err(|e| self.err("remove", path, e))
    }

    /// Streams a remote file into `local`, computing its SHA-256 on the way. Keeps up to
    /// `max_inflight_reads` reads outstanding; the write and hash of one chunk overlap with the
    /// transfer of the next ones. Does not flush beyond `AsyncWrite::flush`, fsync or rename.
    pub async fn download<W>(&self, remote_path: &str, local: &mut W) -> Result<Download, SshError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let handle = self.open(remote_path, OpenFlags::READ, "open").await?;
        let res = self.download_handle(&handle, remote_path, local).await;
        let closed = self.close_handle(handle, remote_path).await;
        let d = res?;
        closed?;
        Ok(d)
    }

    async fn download_handle<W>(&self, handle: &str, path: &str, local: &mut W) -> Result<Download, SshError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let size = match self.sftp.fstat(handle).await {
            Ok(a) => a.attrs.size.unwrap_or(0),
            Err(e) => return Err(self.err("fstat", path, e)),
        };
        let chunk = self.read_chunk;
        let sftp = &self.sftp;
        let make = |offset: u64, len: u32| -> Pending<'_> {
            let h = handle.to_string();
            Pending { offset, len, fut: Box::pin(sftp.read(h, offset, len)), done: None }
        };
        let mut queue: VecDeque<Pending<'_>> = VecDeque::with_capacity(self.max_inflight + 1);
        let mut next = 0u64; // next offset to request
        let mut written = 0u64; // bytes hashed and written (== offset of the queue front)
        // Past the known size we probe one read at a time (EOF, or a file that grew).
        let mut probing = false;
        let mut hasher = Sha256::new();
        let local_err = |e: std::io::Error| SshError::Io {
            context: format!("writing the download of {path} from {}", self.target),
            source: e,
        };
        loop {
            while queue.len() < self.max_inflight && (next < size || (probing && queue.is_empty())) {
                let len = if next < size { (size - next).min(u64::from(chunk)) as u32 } else { chunk };
                queue.push_back(make(next, len));
                next += u64::from(len);
            }
            if queue.is_empty() {
                // Everything up to the stat size is in; confirm EOF with one more read.
                probing = true;
                queue.push_back(make(next, chunk));
                next += u64::from(chunk);
            }
            // Send whatever is new, then wait for the oldest.
            std::future::poll_fn(|cx| if poll_all(&mut queue, cx) { Poll::Ready(()) } else { Poll::Pending })
                .await;
            let Some(front) = queue.pop_front() else {
                continue;
            };
            debug_assert_eq!(front.offset, written);
            let result = front.done.unwrap_or(Err(SftpError::Timeout));
            let data = match result {
                Ok(d) if !d.data.is_empty() => d.data,
                Ok(_) => Vec::new(),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => Vec::new(),
                Err(e) => return Err(self.err("read", path, e)),
            };
            if data.is_empty() {
                // EOF at `written`: later reads are moot.
                break;
            }
            if data.len() > front.len as usize {
                return Err(SshError::Protocol {
                    target: self.target.clone(),
                    detail: format!(
                        "read {path}: server returned {} bytes for a {}-byte request",
                        data.len(),
                        front.len
                    ),
                });
            }
            let got = data.len() as u64;
            if got < u64::from(front.len) {
                // Short read: ask for the gap before anything already queued.
                let gap_off = front.offset + got;
                let gap_len = front.len - got as u32;
                queue.push_front(make(gap_off, gap_len));
            }
            // Queue the local write first (tokio::fs hands it to a blocking thread), then hash
            // while it runs; both overlap with the outstanding network reads.
            local.write_all(&data).await.map_err(local_err)?;
            hasher.update(&data);
            written += got;
            if probing {
                // The file grew past its stat size: go on pipelining.
                probing = false;
                if next <= written {
                    next = written;
                }
            }
        }
        local.flush().await.map_err(local_err)?;
        Ok(Download { bytes: written, sha256: hasher.finalize().into() })
    }

    /// Ends the SFTP session and disconnects.
    pub async fn close(self) {
        let _ = self.sftp.close_session();
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn to_stat(a: &FileAttributes) -> RemoteStat {
    let kind = match a.file_type() {
        FileType::File => RemoteKind::File,
        FileType::Dir => RemoteKind::Dir,
        FileType::Symlink => RemoteKind::Symlink,
        FileType::Other => RemoteKind::Other,
    };
    RemoteStat { size: a.size.unwrap_or(0), mtime: a.mtime.map(i64::from).unwrap_or(0), kind }
}
