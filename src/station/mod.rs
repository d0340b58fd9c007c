//! Station simulator: real OpenSSH `sshd` stations on loopback, each with the on-station layout
//! of a CRFS node (spec §3.1) and a faithful Rust `indexerD`.
//!
//! Why: the backup engine must be tested and benchmarked against the SSH/SFTP server the field
//! runs (OpenSSH), never a fake. Each [`Station`] is a private `sshd -D` on its own loopback port
//! with its own ed25519 host key, `ChrootDirectory` + `ForceCommand internal-sftp` so the SFTP
//! session sees exactly `/etc/node/indexerD.cfg`, `/mnt/internal/data`, `/mnt/internal/.indexerD`.
//!
//! Layout (sshd refuses a chroot with a group/world-writable or non-root path component, hence
//! not under `/tmp`): `<base>/<pid>-<n>/` (root, 0755) holds `sshd_config`, the host key,
//! `authorized_keys`, `sshd.pid`, `sshd.log`, and `root/` — the chroot. `<base>` defaults to
//! `$APPCATALOGA_STATION_DIR`, else `$CARGO_TARGET_DIR/stations`, else `<crate>/target/stations`.
//! Station users come from a fixed pool (`acatst0` … `acatst63`), created with `useradd` when
//! missing and leased per station with a lock file, so parallel tests and processes never share
//! one (the password is per user). This needs root.
//!
//! What it must not do: touch the real `/etc/ssh` or any system sshd; leave processes behind
//! (Drop kills sshd and its session children, and a small shell guard kills them if the owning
//! process dies); let the server change data files (they are root-owned, 0644; only the indexer
//! folder belongs to the station user).
//!
//! The API is blocking (process spawns, short waits); call it from tests directly, or wrap it in
//! `spawn_blocking` inside a busy runtime.

pub mod indexer;
pub mod proxy;

use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use indexer::{IndexerConfig, IndexerOutcome};

/// Absolute path of OpenSSH's daemon (it re-execs itself, so it needs the absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";
/// Number of pooled station users.
pub const USER_POOL: u32 = 64;
const USER_PREFIX: &str = "acatst";

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("station I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("all {USER_POOL} pooled station users are in use")]
    NoFreeUser,
    #[error("sshd of station {name} did not start: {detail}")]
    SshdStart { name: String, detail: String },
    #[error("sshd of station {name} is not running")]
    NotRunning { name: String },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StationError {
    let path = path.into();
    move |source| StationError::Io { path, source }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct StationSpec {
    /// A label (used in logs and error messages).
    pub name: String,
    /// `Some`: password authentication is enabled with this password. `None`: disabled (the
    /// user still gets a random password, so the account is not locked).
    pub password: Option<String>,
    /// An OpenSSH public key (`.pub`) to authorize (key authentication).
    pub authorized_key: Option<PathBuf>,
    /// Where stations live (root-owned 0755 folder); `None` = [`default_base_dir`].
    pub base_dir: Option<PathBuf>,
    /// The agent configuration written to `/etc/node/indexerD.cfg`.
    pub indexer: IndexerConfig,
    /// `LogLevel` of sshd (default `DEBUG1`, which logs every `userauth-request`).
    pub log_level: String,
}

impl StationSpec {
    /// A password station with the default layout.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            password: Some(format!("pw-{name}-{}", std::process::id())),
            name,
            authorized_key: None,
            base_dir: None,
            indexer: IndexerConfig::default(),
            log_level: "DEBUG1".into(),
        }
    }

    /// Authorizes the public key at `pub_key_path`.
    pub fn with_authorized_key(mut self, pub_key_path: impl Into<PathBuf>) -> Self {
        self.authorized_key = Some(pub_key_path.into());
        self
    }

    /// Sets (or, with `None`, disables) password authentication.
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.password = password;
        self
    }
}

/// The default base folder of station trees.
pub fn default_base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("APPCATALOGA_STATION_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target =
        if target.is_absolute() { target } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(target) };
    let candidate = target.join("stations");
    if chroot_safe(&candidate) {
        candidate
    } else {
        // sshd refuses a ChrootDirectory with a group/world-writable or non-root ancestor
        // (a checkout under /tmp or a home folder): fall back to a root-owned system folder.
        PathBuf::from("/var/lib/appcataloga-stations")
    }
}

/// `true` when every existing ancestor of `path` is owned by root and not writable by group or
/// others, as sshd requires of a `ChrootDirectory`.
fn chroot_safe(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().filter_map(|a| fs::metadata(a).ok()).all(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}

fn run(cmd: &mut Command) -> Result<String, StationError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StationError::Command { command: format!("{cmd:?}"), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(StationError::Command {
            command: format!("{cmd:?}"),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<(), StationError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StationError> {
    fs::write(path, bytes).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Ensures `base` exists as a root-owned 0755 folder, and every ancestor is acceptable to sshd.
fn prepare_base(base: &Path) -> Result<(), StationError> {
    fs::create_dir_all(base).map_err(io_err(base))?;
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).map_err(io_err(base))?;
    fs::create_dir_all(base.join("users")).map_err(io_err(base.join("users")))?;
    Ok(())
}

/// Removes station folders left by processes that no longer exist.
fn sweep_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| n.split_once('-')).and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A leased pooled user; the lease ends when the lock file is closed.
struct UserLease {
    name: String,
    uid: u32,
    gid: u32,
    _lock: fs::File,
}

static IN_PROCESS_USERS: OnceLock<Mutex<Vec<bool>>> = OnceLock::new();

fn lease_user(base: &Path, password: &str) -> Result<UserLease, StationError> {
    let users_dir = base.join("users");
    let taken = IN_PROCESS_USERS.get_or_init(|| Mutex::new(vec![false; USER_POOL as usize]));
    for i in 0..USER_POOL {
        {
            let mut t = taken.lock().unwrap_or_else(|p| p.into_inner());
            if t[i as usize] {
                continue;
            }
            t[i as usize] = true;
        }
        let lock_path = users_dir.join(format!("{USER_PREFIX}{i}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if file.try_lock().is_err() {
            release_slot(i);
            continue;
        }
        let name = format!("{USER_PREFIX}{i}");
        let res = ensure_user(&users_dir, &name, password);
        match res {
            Ok((uid, gid)) => {
                return Ok(UserLease { name, uid, gid, _lock: file });
            }
            Err(e) => {
                release_slot(i);
                return Err(e);
            }
        }
    }
    Err(StationError::NoFreeUser)
}

fn release_slot(i: u32) {
    if let Some(t) = IN_PROCESS_USERS.get() {
        let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
        t[i as usize] = false;
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Creates the user if missing and sets its password, under a global lock (useradd and
/// chpasswd themselves fail when run concurrently).
fn ensure_user(users_dir: &Path, name: &str, password: &str) -> Result<(u32, u32), StationError> {
    let lock_path = users_dir.join(".accounts.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    if lookup_user(name).is_none() {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]))?;
    }
    let (uid, gid) = lookup_user(name).ok_or_else(|| StationError::Command {
        command: format!("useradd {name}"),
        detail: "user still missing from /etc/passwd".into(),
    })?;
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StationError::Command { command: "chpasswd".into(), detail: e.to_string() })?;
    if let Some(mut stdin) = child.stdin.take() {
        // The password is test material; never logged.
        let _ = writeln!(stdin, "{name}:{password}");
    }
    let out = child
        .wait_with_output()
        .map_err(|e| StationError::Command { command: "chpasswd".into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(StationError::Command {
            command: "chpasswd".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok((uid, gid))
}

fn free_port() -> Result<u16, StationError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("127.0.0.1:0"))?;
    l.local_addr().map(|a| a.port()).map_err(io_err("127.0.0.1:0"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// SHA-256 fingerprint (`SHA256:…`) of an OpenSSH public key file, as `ssh-keygen -l -E sha256`.
pub fn key_fingerprint(pub_key: &Path) -> Result<String, StationError> {
    let out = run(Command::new("ssh-keygen").args(["-l", "-E", "sha256", "-f"]).arg(pub_key))?;
    out.split_whitespace().nth(1).map(str::to_string).ok_or_else(|| StationError::Command {
        command: "ssh-keygen -l".into(),
        detail: format!("unexpected output {out:?}"),
    })
}

/// Generates an unencrypted ed25519 key pair at `path` (+ `path.pub`), replacing any old one.
pub fn generate_ed25519(path: &Path, comment: &str) -> Result<(), StationError> {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let mut pubp = path.as_os_str().to_owned();
    pubp.push(".pub");
    let _ = fs::remove_file(PathBuf::from(pubp));
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(path))?;
    Ok(())
}

/// A running simulated station. Dropping it kills sshd and removes the tree.
pub struct Station {
    spec: StationSpec,
    dir: PathBuf,
    root: PathBuf,
    port: u16,
    user: UserLease,
    password: String,
    sshd: Option<Child>,
    guard: Option<Child>,
    incarnation: u32,
    timer: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Station {
    /// Builds the tree, leases a user, generates a host key and starts sshd.
    pub fn start(spec: StationSpec) -> Result<Station, StationError> {
        let base = spec.base_dir.clone().unwrap_or_else(default_base_dir);
        prepare_base(&base)?;
        sweep_stale(&base);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        mkdir_mode(&dir, 0o755)?;
        let password = spec
            .password
            .clone()
            .unwrap_or_else(|| format!("unused-{}-{n}-{:?}", std::process::id(), Instant::now()));
        let user = match lease_user(&base, &password) {
            Ok(u) => u,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let root = dir.join("root");
        let mut st = Station {
            port: 0,
            root,
            dir,
            user,
            password,
            sshd: None,
            guard: None,
            incarnation: 0,
            timer: None,
            spec,
        };
        st.build_tree()?;
        generate_ed25519(&st.host_key_path(), &format!("station-{}", st.spec.name))?;
        st.start_guard()?;
        st.launch(true)?;
        Ok(st)
    }

    fn host_key_path(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key")
    }

    fn build_tree(&self) -> Result<(), StationError> {
        let r = &self.root;
        for d in ["", "etc", "etc/node", "mnt", "mnt/internal"] {
            mkdir_mode(&r.join(d), 0o755)?;
        }
        let cfg = &self.spec.indexer;
        write_mode(&self.path(indexer::CFG_PATH), cfg.to_cfg_text().as_bytes(), 0o644)?;
        let data = self.path(&cfg.local_repo);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).map_err(io_err(&data))?;
        let idx = self.path(&cfg.indexerd_folder);
        fs::create_dir_all(&idx).map_err(io_err(&idx))?;
        fs::set_permissions(&idx, fs::Permissions::from_mode(0o755)).map_err(io_err(&idx))?;
        std::os::unix::fs::chown(&idx, Some(self.user.uid), Some(self.user.gid)).map_err(io_err(&idx))?;
        // Authorized keys: root-owned, world-readable (sshd reads it as the user).
        let ak = self.dir.join("authorized_keys");
        let keys = match &self.spec.authorized_key {
            Some(p) => fs::read(p).map_err(io_err(p))?,
            None => Vec::new(),
        };
        write_mode(&ak, &keys, 0o644)
    }

    fn write_config(&self) -> Result<PathBuf, StationError> {
        let d = &self.dir;
        let text = format!(
            "# appcataloga station simulator: {name}\n\
             Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {hk}\n\
             PidFile {pid}\n\
             UsePAM no\n\
             LogLevel {level}\n\
             AllowUsers {user}\n\
             PermitRootLogin no\n\
             PasswordAuthentication {pw}\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             AuthorizedKeysFile {ak}\n\
             StrictModes yes\n\
             ChrootDirectory {root}\n\
             ForceCommand internal-sftp\n\
             Subsystem sftp internal-sftp\n\
             AllowTcpForwarding no\n\
             X11Forwarding no\n\
             PermitTTY no\n\
             MaxStartups 30:30:100\n\
             ClientAliveInterval 0\n",
            name = self.spec.name,
            port = self.port,
            hk = self.host_key_path().display(),
            pid = d.join("sshd.pid").display(),
            level = self.spec.log_level,
            user = self.user.name,
            pw = if self.spec.password.is_some() { "yes" } else { "no" },
            ak = d.join("authorized_keys").display(),
            root = self.root.display(),
        );
        let path = d.join("sshd_config");
        write_mode(&path, text.as_bytes(), 0o644)?;
        Ok(path)
    }

    /// A shell that kills sshd (and its session children) and removes the tree once this
    /// process is gone, even after a panic=abort or SIGKILL of the test process.
    fn start_guard(&mut self) -> Result<(), StationError> {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             p=$(cat '{pidf}' 2>/dev/null); \
             if [ -n \"$p\" ]; then pkill -9 -P \"$p\"; kill -9 \"$p\"; fi; \
             rm -rf '{dir}'",
            me = std::process::id(),
            pidf = self.dir.join("sshd.pid").display(),
            dir = self.dir.display(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StationError::Command { command: "sh guard".into(), detail: e.to_string() })?;
        self.guard = Some(child);
        Ok(())
    }

    /// Starts sshd; with `new_port`, on a fresh free port (retried if another process grabs it).
    fn launch(&mut self, new_port: bool) -> Result<(), StationError> {
        let _ = fs::create_dir_all("/run/sshd");
        let mut last = String::new();
        for _ in 0..5 {
            if new_port || self.port == 0 {
                self.port = free_port()?;
            }
            let cfg = self.write_config()?;
            let log = self.sshd_log_path();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| StationError::SshdStart {
                    name: self.spec.name.clone(),
                    detail: e.to_string(),
                })?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "exited with {status}; log: {}",
                        fs::read_to_string(&log).unwrap_or_default().trim()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                    self.sshd = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "not listening after 10 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !new_port && !last.contains("Address already in use") {
                break;
            }
        }
        Err(StationError::SshdStart { name: self.spec.name.clone(), detail: last })
    }

    fn sshd_log_path(&self) -> PathBuf {
        self.dir.join(format!("sshd.{}.log", self.incarnation))
    }

    /// The station's label.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// Loopback port of sshd.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    /// Station user name.
    pub fn user(&self) -> &str {
        &self.user.name
    }
    /// Uid/gid of the station user.
    pub fn user_ids(&self) -> (u32, u32) {
        (self.user.uid, self.user.gid)
    }
    /// Password of the station user (set even when password authentication is disabled).
    pub fn password(&self) -> &str {
        &self.password
    }
    /// The chroot: the station's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The control folder (config, keys, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The agent configuration of this station.
    pub fn indexer_config(&self) -> &IndexerConfig {
        &self.spec.indexer
    }
    /// Local path of an in-station absolute path (e.g. `/mnt/internal/data/x.bin`).
    pub fn path(&self, in_station: &str) -> PathBuf {
        self.root.join(in_station.trim_start_matches('/'))
    }

    /// Writes a data file under `LOCAL_REPO` (`rel` may contain sub-folders), root-owned 0644;
    /// returns its in-station path.
    pub fn add_file(&self, rel: &str, bytes: &[u8]) -> Result<String, StationError> {
        let in_station =
            format!("{}/{}", self.spec.indexer.local_repo.trim_end_matches('/'), rel.trim_start_matches('/'));
        self.write_root_file(&in_station, bytes)?;
        Ok(in_station)
    }

    /// Writes a generated CRFS `.bin` file under `LOCAL_REPO`; returns its in-station path.
    pub fn add_crfs_file(
        &self,
        rel: &str,
        spec: &crate::crfs::generator::FileSpec,
    ) -> Result<String, StationError> {
        let bytes = crate::crfs::generator::generate(spec).map_err(io_err(rel))?;
        self.add_file(rel, &bytes)
    }

    /// Writes a data file of `len` pseudo-random bytes (deterministic from `seed`) under
    /// `LOCAL_REPO`, streaming (no whole-file buffer); returns its in-station path.
    pub fn add_random_file(&self, rel: &str, len: u64, seed: u64) -> Result<String, StationError> {
        let in_station =
            format!("{}/{}", self.spec.indexer.local_repo.trim_end_matches('/'), rel.trim_start_matches('/'));
        let p = self.path(&in_station);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let f = fs::File::create(&p).map_err(io_err(&p))?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            for c in block.chunks_exact_mut(8) {
                // xorshift64*: fast, deterministic, incompressible enough for transfers.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                c.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).map_err(io_err(&p))?;
            left -= n as u64;
        }
        w.flush().map_err(io_err(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io_err(&p))?;
        Ok(in_station)
    }

    /// Writes any in-station file as root, 0644 (parents created, 0755).
    pub fn write_root_file(&self, in_station: &str, bytes: &[u8]) -> Result<(), StationError> {
        let p = self.path(in_station);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        write_mode(&p, bytes, 0o644)
    }

    /// Writes an in-station file owned by the station user, 0644 (e.g. a hostile DUE_BACKUP).
    pub fn write_user_file(&self, in_station: &str, bytes: &[u8]) -> Result<(), StationError> {
        self.write_root_file(in_station, bytes)?;
        let p = self.path(in_station);
        std::os::unix::fs::chown(&p, Some(self.user.uid), Some(self.user.gid)).map_err(io_err(&p))
    }

    /// Writes `DUE_BACKUP` verbatim (station-user owned), for hostile-input tests.
    pub fn write_due_backup_raw(&self, bytes: &[u8]) -> Result<(), StationError> {
        let p = self.spec.indexer.due_backup.clone();
        self.write_user_file(&p, bytes)
    }

    /// Creates a symlink at in-station `link` pointing to `target` (verbatim).
    pub fn add_symlink(&self, target: &str, link: &str) -> Result<(), StationError> {
        let p = self.path(link);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::os::unix::fs::symlink(target, &p).map_err(io_err(&p))
    }

    /// Sets the modification time of an in-station file.
    pub fn set_mtime(&self, in_station: &str, mtime: SystemTime) -> Result<(), StationError> {
        let p = self.path(in_station);
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(mtime))
            .or_else(|_| {
                // Read-only file types (e.g. directories): open read-only works for set_times.
                fs::File::open(&p).and_then(|f| f.set_modified(mtime))
            })
            .map_err(io_err(&p))
    }

    /// Reads an in-station file (`None` if missing).
    pub fn read(&self, in_station: &str) -> Result<Option<Vec<u8>>, StationError> {
        let p = self.path(in_station);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Whether an in-station path exists (without following a final symlink).
    pub fn exists(&self, in_station: &str) -> bool {
        fs::symlink_metadata(self.path(in_station)).is_ok()
    }

    /// `DUE_BACKUP` contents (`None` if missing).
    pub fn due_backup(&self) -> Result<Option<Vec<u8>>, StationError> {
        self.read(&self.spec.indexer.due_backup)
    }

    /// `BACKUP_DONE` contents (`None` if missing).
    pub fn backup_done(&self) -> Result<Option<Vec<u8>>, StationError> {
        self.read(&self.spec.indexer.backup_done)
    }

    /// Whether `HALT_FLAG` exists.
    pub fn halt_flag_exists(&self) -> bool {
        self.exists(&self.spec.indexer.halt_flag)
    }

    /// Creates `HALT_FLAG` as the station's own indexer does while it runs (empty, root-owned,
    /// mtime now). Release with [`Station::release_halt_flag`].
    pub fn hold_halt_flag(&self) -> Result<(), StationError> {
        self.write_root_file(&self.spec.indexer.halt_flag.clone(), b"")
    }

    /// Sets `HALT_FLAG`'s mtime `age` in the past (to make it stale).
    pub fn age_halt_flag(&self, age: Duration) -> Result<(), StationError> {
        let t = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        self.set_mtime(&self.spec.indexer.halt_flag.clone(), t)
    }

    /// Removes `HALT_FLAG` (whoever created it).
    pub fn release_halt_flag(&self) -> Result<(), StationError> {
        let p = self.path(&self.spec.indexer.halt_flag);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&p)(e)),
            _ => Ok(()),
        }
    }

    /// One run of the station agent, now.
    pub fn run_indexer(&self) -> Result<IndexerOutcome, StationError> {
        self.run_indexer_at(SystemTime::now())
    }

    /// One run of the station agent at a given "now".
    pub fn run_indexer_at(&self, now: SystemTime) -> Result<IndexerOutcome, StationError> {
        let owner = indexer::Owner { uid: self.user.uid, gid: self.user.gid };
        indexer::run_indexer(&self.root, now, Some(owner)).map_err(io_err(&self.root))
    }

    /// Runs the agent every `period` on a background thread (like the hourly cron job) until
    /// [`Station::stop_indexer_timer`] or drop.
    pub fn start_indexer_timer(&mut self, period: Duration) {
        self.stop_indexer_timer();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, root) = (stop.clone(), self.root.clone());
        let owner = indexer::Owner { uid: self.user.uid, gid: self.user.gid };
        let handle = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    if let Err(e) = indexer::run_indexer(&root, SystemTime::now(), Some(owner)) {
                        tracing::warn!(error = %e, "station indexer run failed");
                    }
                    next = Instant::now() + period;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        self.timer = Some((stop, handle));
    }

    /// Stops the periodic agent.
    pub fn stop_indexer_timer(&mut self) {
        if let Some((stop, handle)) = self.timer.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }

    /// Public host-key file.
    pub fn host_key_pub_path(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key.pub")
    }

    /// `SHA256:…` fingerprint of the current host key (as `ssh-keygen -l -E sha256`).
    pub fn host_key_fingerprint(&self) -> Result<String, StationError> {
        key_fingerprint(&self.host_key_pub_path())
    }

    /// A `known_hosts` line for this station (`[127.0.0.1]:port ssh-ed25519 AAAA…`).
    pub fn known_hosts_line(&self) -> Result<String, StationError> {
        let p = self.host_key_pub_path();
        let text = fs::read_to_string(&p).map_err(io_err(&p))?;
        let mut f = text.split_whitespace();
        let (alg, key) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        Ok(format!("[127.0.0.1]:{} {alg} {key}\n", self.port))
    }

    /// pid of the running sshd listener, if any.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd.as_ref().map(|c| c.id())
    }

    /// Whether the sshd listener is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.sshd.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `kill -9` of sshd and of every session process it forked (open connections drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            // Every descendant: the per-connection monitor *and* its unprivileged session
            // child (which serves SFTP and survives its parent otherwise).
            let mut all = Vec::new();
            let mut frontier = vec![child.id()];
            while let Some(p) = frontier.pop() {
                for c in children_of(p) {
                    all.push(c);
                    frontier.push(c);
                }
            }
            for pid in all {
                let _ = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(self.dir.join("sshd.pid"));
    }

    /// Stops sshd (same as [`Station::kill`]: listener and sessions).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts sshd again on the same port with the same host key; a new log incarnation begins.
    pub fn start_again(&mut self) -> Result<(), StationError> {
        if self.is_running() {
            return Ok(());
        }
        self.incarnation += 1;
        self.launch(false)
    }

    /// Stops sshd, generates a different host key, and starts it again on the same port (a new
    /// log incarnation begins, see [`Station::sshd_log`]).
    pub fn restart_with_new_host_key(&mut self) -> Result<(), StationError> {
        self.kill();
        generate_ed25519(&self.host_key_path(), &format!("station-{}-rekeyed", self.spec.name))?;
        self.incarnation += 1;
        self.launch(false)
    }

    /// The sshd log of the current incarnation (since the last (re)start).
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.sshd_log_path()).unwrap_or_default()
    }

    /// Every sshd log of this station, oldest first.
    pub fn sshd_log_all(&self) -> String {
        (0..=self.incarnation)
            .map(|i| fs::read_to_string(self.dir.join(format!("sshd.{i}.log"))).unwrap_or_default())
            .collect()
    }

    /// Number of authentication requests sshd logged in the current incarnation (needs
    /// `LogLevel DEBUG1`, the default).
    pub fn auth_attempts(&self) -> usize {
        self.sshd_log().matches("userauth-request for user").count()
    }
}

/// Direct children of `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

impl Drop for Station {
    fn drop(&mut self) {
        self.stop_indexer_timer();
        self.kill();
        if let Some(mut g) = self.guard.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        // A session process forked just before the kill may still re-open its log: retry.
        for _ in 0..20 {
            let _ = fs::remove_dir_all(&self.dir);
            std::thread::sleep(Duration::from_millis(25));
            if !self.dir.exists() {
                break;
            }
        }
        if let Some(i) = self.user.name.strip_prefix(USER_PREFIX).and_then(|n| n.parse().ok()) {
            release_slot(i);
        }
    }
}
