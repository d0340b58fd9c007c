//! The backup worker pool and the per-station protocol.
//!
//! A dispatcher claims queued stations (oldest request first) while fewer than
//! `backup.max_parallel_hosts` backups run; each claim runs in its own tracked task with a
//! lease keeper that renews the lease and notices stop requests and lost leases. One backup:
//!
//! 1. connect (host key checked before authentication; a first key is pinned under
//!    `accept-new`), read the station's `indexerD.cfg`;
//! 2. take `HALT_FLAG` with an exclusive create whose content names owner, task and attempt
//!    (reclaiming a flag of our own earlier attempt), waiting random pauses while the station
//!    holds it, up to a limit (then a "halt flag alert"); read it back before going on;
//! 3. take the index by renaming `DUE_BACKUP` to a private name (entries the station's indexer
//!    adds meanwhile land in a new index and are never deleted unseen), record every listed
//!    file in one transaction, and only then remove the private copy;
//! 4. copy each file: stat, pipelined download to a temporary name while hashing, stat again
//!    (changed → discard and retry later; vanished → recorded, go on), size check, fsync,
//!    no-clobber publication, directory fsync, then the database record in one transaction;
//! 5. append the copied paths to `BACKUP_DONE`, lower the flag (only if it is still ours).
//!
//! The flag is lowered on every exit path: success, error, shutdown, stop, lost lease.
//! Station data files are only ever read.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::commit;
use super::index::{self, FlagOwner, StationConfig};
use super::ssh::{self, Auth, ConnectParams, HostKeyPolicy, Remote, RemoteKind, SshError, SshOptions};
use crate::config::{BackupConfig, HostKeyPolicyName};
use crate::secret::StationKey;
use crate::store::backup::{Claim, CopyDone, CopyJob, HostAccess, HostOutcome, LeaseState};
use crate::store::{Store, StoreError, jitter_ms, status};

/// Host conditions (`HOST.NU_STATUS`).
pub mod condition {
    /// All well.
    pub const OK: i8 = 0;
    /// Station config missing ("no daemon").
    pub const NO_DAEMON: i8 = 1;
    /// The station held its HALT_FLAG past the limit.
    pub const HALT_FLAG_ALERT: i8 = 2;
    /// The station presented another host key.
    pub const HOST_KEY_MISMATCH: i8 = 3;
    /// Authentication was refused.
    pub const AUTH_FAILED: i8 = 4;
    /// The station could not be reached.
    pub const UNREACHABLE: i8 = 5;
}

/// Everything a backup needs. Cheap to clone.
#[derive(Clone)]
pub struct BackupContext {
    /// The queue.
    pub store: Store,
    /// Settings.
    pub config: Arc<BackupConfig>,
    /// Repository root.
    pub repo_root: PathBuf,
    /// Key that opens stored station passwords.
    pub key: Option<Arc<StationKey>>,
    /// This daemon's instance id.
    pub instance: Arc<str>,
    /// Counters exported on `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl BackupContext {
    fn ssh_options(&self) -> SshOptions {
        SshOptions {
            connect_timeout: self.config.connect_timeout,
            inactivity_timeout: self.config.io_timeout,
            ..SshOptions::default()
        }
    }
}

/// Why a running backup was interrupted.
const RUNNING: u8 = 0;
const SHUTDOWN: u8 = 1;
const LEASE_LOST: u8 = 2;
const STOP_REQUESTED: u8 = 3;

/// Runs the dispatcher until `cancel`; backups in flight finish their current step, lower
/// their flags and release their tasks.
pub async fn run(ctx: BackupContext, cancel: CancellationToken, tracker: TaskTracker) {
    let host = crate::instance::hostname();
    let prefix = format!("{host}:");
    match tokio::task::spawn_blocking({
        let root = ctx.repo_root.clone();
        move || commit::sweep_partials(&root)
    })
    .await
    {
        Ok(Ok(n)) if n > 0 => info!(removed = n, "Removed temporary files of a previous run."),
        Ok(Err(error)) => warn!(%error, "Could not sweep temporary files."),
        _ => {}
    }
    match ctx.store.requeue_expired(&ctx.instance, Some((&prefix, &ctx.instance))).await {
        Ok(n) if n > 0 => info!(requeued = n, "Requeued backups claimed by a previous run."),
        Ok(_) => {}
        Err(error) => warn!(%error, "Could not requeue earlier claims."),
    }
    let permits = Arc::new(Semaphore::new(ctx.config.max_parallel_hosts));
    let mut reaper = tokio::time::interval(ctx.config.lease / 2);
    reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(max_parallel_hosts = ctx.config.max_parallel_hosts, "Backup workers started.");
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            _ = reaper.tick() => {
                if let Err(error) = ctx.store.requeue_expired(&ctx.instance, None).await {
                    debug!(%error, "Lease reaper failed.");
                }
                continue;
            }
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        match ctx.store.claim_backup(&ctx.instance, ctx.config.lease).await {
            Ok(Some((claim, access))) => {
                let span = info_span!("backup", host_id = claim.host_id, host_uid = %access.host_uid, task_id = claim.task_id);
                tracker.spawn(
                    backup_host(ctx.clone(), claim, access, permit, cancel.child_token()).instrument(span),
                );
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ctx.config.poll_interval) => {}
                }
            }
            Err(error) => {
                drop(permit);
                warn!(%error, "Could not claim a backup task.");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ctx.config.poll_interval * 2) => {}
                }
            }
        }
    }
    info!("Backup dispatcher stopped.");
}

/// Exponential backoff with ±25 % jitter.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16)).min(max);
    let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
    let jitter = jitter_ms(ms / 2);
    Duration::from_millis(ms - ms / 4 + jitter).min(max)
}

async fn backup_host(
    ctx: BackupContext,
    claim: Claim,
    access: HostAccess,
    _permit: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    info!("Backup started.");
    let reason = Arc::new(AtomicU8::new(RUNNING));
    let work = cancel.child_token();
    let keeper_stop = CancellationToken::new();
    let keeper = keep_lease(&ctx, &claim, &reason, &work, &cancel, &keeper_stop);
    let (outcome, ()) = tokio::join!(
        async {
            let outcome = run_backup(&ctx, &claim, &access, &work).await;
            keeper_stop.cancel();
            outcome
        },
        keeper
    );
    let outcome = match reason.load(Ordering::SeqCst) {
        LEASE_LOST => return,
        SHUTDOWN if !matches!(outcome, HostOutcome::Done { .. }) => {
            HostOutcome::Released { message: "Released at shutdown; resumes at the next start".into() }
        }
        STOP_REQUESTED if !matches!(outcome, HostOutcome::Done { .. }) => HostOutcome::Stopped,
        _ => outcome,
    };
    match &outcome {
        HostOutcome::Done { message } => info!(summary = %message, "Backup done."),
        HostOutcome::Released { .. } => info!("Backup released at shutdown."),
        HostOutcome::Stopped => info!("Backup stopped by request."),
        HostOutcome::Retry { message, backoff, .. } => {
            warn!(reason = %message, retry_in_s = backoff.as_secs(), "Backup failed.");
        }
        HostOutcome::Frozen { message } => warn!(reason = %message, "Backup frozen until an operator acts."),
    }
    for attempt in 0..5u64 {
        match ctx.store.finish_backup(&claim, &outcome).await {
            Ok(true) => break,
            Ok(false) => {
                warn!("Lease lost before the result could be recorded.");
                break;
            }
            Err(error) => {
                warn!(%error, "Could not record the backup result; retrying.");
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
        }
    }
}

/// Renews the lease every third of it until `stop`; cancels `work` (recording why) on
/// shutdown, on a stop request, or when the lease is lost.
async fn keep_lease(
    ctx: &BackupContext,
    claim: &Claim,
    reason: &AtomicU8,
    work: &CancellationToken,
    parent: &CancellationToken,
    stop: &CancellationToken,
) {
    let lease = ctx.config.lease;
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = parent.cancelled() => {
                let _ = reason.compare_exchange(RUNNING, SHUTDOWN, Ordering::SeqCst, Ordering::SeqCst);
                work.cancel();
                stop.cancelled().await;
                return;
            }
            _ = tick.tick() => match ctx.store.renew_lease(claim, lease).await {
                Ok(LeaseState::Held { cancel_requested: false }) => {}
                Ok(LeaseState::Held { cancel_requested: true }) => {
                    let _ = reason.compare_exchange(RUNNING, STOP_REQUESTED, Ordering::SeqCst, Ordering::SeqCst);
                    work.cancel();
                }
                Ok(LeaseState::Lost) => {
                    warn!("Lease lost: stopping this backup without writing anything more.");
                    reason.store(LEASE_LOST, Ordering::SeqCst);
                    work.cancel();
                    stop.cancelled().await;
                    return;
                }
                // A short database outage: try again at the next tick.
                Err(error) => warn!(%error, "Could not renew the lease."),
            },
        }
    }
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    copied: u64,
    bytes: u64,
    deduplicated: u64,
    vanished: u64,
    changed: u64,
    rejected: u64,
    failed: u64,
}

/// A backup step failed: what to record.
struct Abort(HostOutcome);

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Abort {
        Abort(HostOutcome::Retry {
            message: format!("database: {e}"),
            backoff: Duration::from_secs(10),
            status: status::PENDING,
        })
    }
}

async fn run_backup(
    ctx: &BackupContext,
    claim: &Claim,
    access: &HostAccess,
    cancel: &CancellationToken,
) -> HostOutcome {
    let cfg = &ctx.config;
    let target = format!("{}:{}", access.address, access.port);
    let transient = |message: String| HostOutcome::Retry {
        message,
        backoff: backoff(cfg.retry_base, cfg.retry_max, access.failures),
        status: status::PENDING,
    };
    let permanent =
        |message: String| HostOutcome::Retry { message, backoff: cfg.permanent_retry, status: status::ERROR };

    // Credentials.
    let auth = match credentials(ctx, access) {
        Ok(a) => a,
        Err(message) => {
            let _ = ctx.store.set_host_condition(claim.host_id, condition::AUTH_FAILED, Some(&message)).await;
            return permanent(message);
        }
    };
    let policy = match cfg.host_key_policy {
        HostKeyPolicyName::AcceptNew => HostKeyPolicy::AcceptNew,
        HostKeyPolicyName::Strict => HostKeyPolicy::Strict,
        HostKeyPolicyName::KnownHosts => {
            HostKeyPolicy::KnownHostsFile(cfg.known_hosts_file.clone().unwrap_or_default())
        }
    };
    let params = ConnectParams {
        host: access.address.clone(),
        port: access.port,
        user: access.user.clone(),
        auth,
        pinned_fingerprint: access.host_key_fingerprint.clone(),
        policy,
    };
    let ssh_options = ctx.ssh_options();
    let connected = tokio::select! {
        () = cancel.cancelled() => return HostOutcome::Released { message: "interrupted".into() },
        r = ssh::connect(&params, &ssh_options) => r,
    };
    let remote = match connected {
        Ok(r) => r,
        Err(e @ (SshError::HostKeyMismatch { .. } | SshError::HostKeyUnknown { .. })) => {
            let message = e.to_string();
            let _ = ctx
                .store
                .set_host_condition(claim.host_id, condition::HOST_KEY_MISMATCH, Some(&message))
                .await;
            return HostOutcome::Frozen { message };
        }
        Err(e @ SshError::AuthFailed { .. }) => {
            let message = e.to_string();
            let _ = ctx.store.set_host_condition(claim.host_id, condition::AUTH_FAILED, Some(&message)).await;
            return permanent(message);
        }
        Err(e) => {
            let message = format!("cannot reach {target}: {e}");
            let _ = ctx.store.set_host_condition(claim.host_id, condition::UNREACHABLE, Some(&message)).await;
            return if e.is_permanent() { permanent(message) } else { transient(message) };
        }
    };
    if remote.newly_pinned()
        && let Err(error) = ctx.store.pin_host_key(claim.host_id, remote.host_key_fingerprint()).await
    {
        warn!(%error, "Could not pin the host key.");
    }

    // Station configuration.
    let cfg_path = access.station_config.clone().unwrap_or_else(|| cfg.station_config.clone());
    let station = match remote.read_to_vec(&cfg_path, 64 << 10).await {
        Ok(Some(bytes)) => match index::parse_station_config(&String::from_utf8_lossy(&bytes)) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("station config {cfg_path} on {target}: {e}");
                let _ =
                    ctx.store.set_host_condition(claim.host_id, condition::NO_DAEMON, Some(&message)).await;
                close(remote).await;
                return permanent(message);
            }
        },
        Ok(None) => {
            let message =
                format!("station config {cfg_path} not found on {target}: is the indexer installed?");
            let _ = ctx.store.set_host_condition(claim.host_id, condition::NO_DAEMON, Some(&message)).await;
            close(remote).await;
            return permanent(message);
        }
        Err(e) => {
            close(remote).await;
            return transient(format!("reading {cfg_path} on {target}: {e}"));
        }
    };

    // HALT_FLAG.
    let owner = FlagOwner { instance: claim.owner.clone(), task_id: claim.task_id, attempt: claim.attempt };
    match take_flag(ctx, &remote, &station, &owner, cancel).await {
        Ok(true) => {}
        Ok(false) => {
            close(remote).await;
            return HostOutcome::Released { message: "interrupted while waiting for the HALT_FLAG".into() };
        }
        Err(Abort(outcome)) => {
            if let HostOutcome::Retry { message, .. } = &outcome
                && message.starts_with("halt flag alert")
            {
                let _ = ctx
                    .store
                    .set_host_condition(claim.host_id, condition::HALT_FLAG_ALERT, Some(message))
                    .await;
            }
            close(remote).await;
            return outcome;
        }
    }

    // The flag is ours: whatever happens next, lower it before leaving.
    let refresh_stop = CancellationToken::new();
    let (result, ()) = tokio::join!(
        async {
            let result = with_flag(ctx, claim, access, &remote, &station, cancel).await;
            refresh_stop.cancel();
            result
        },
        refresh_flag(&remote, &station, &owner, &refresh_stop)
    );
    lower_flag(&remote, &station, &owner).await;
    close(remote).await;
    match result {
        Ok(t) => HostOutcome::Done {
            message: format!(
                "Backup done: {} copied ({} bytes), {} already present, {} vanished, {} changed during copy, {} rejected, {} failed",
                t.copied, t.bytes, t.deduplicated, t.vanished, t.changed, t.rejected, t.failed
            ),
        },
        Err(Abort(outcome)) => outcome,
    }
}

async fn close(remote: Remote) {
    remote.close().await;
}

fn credentials(ctx: &BackupContext, access: &HostAccess) -> Result<Auth, String> {
    if let Some(file) = &access.key_file {
        return Ok(Auth::KeyFile(PathBuf::from(file)));
    }
    if let Some(sealed) = &access.password {
        let Some(key) = &ctx.key else {
            return Err(
                "the station password is stored but no key is configured to open it (secrets.key_file)"
                    .into(),
            );
        };
        return key
            .open(access.host_id.into(), sealed)
            .map(Auth::Password)
            .map_err(|e| format!("cannot open the stored station password: {e}"));
    }
    if let Some(file) = &ctx.config.default_key_file {
        return Ok(Auth::KeyFile(file.clone()));
    }
    Err("no credentials for this station: Zabbix sent no password and no key file is configured".into())
}

/// Takes the flag; `Ok(false)` when interrupted.
async fn take_flag(
    ctx: &BackupContext,
    remote: &Remote,
    station: &StationConfig,
    owner: &FlagOwner,
    cancel: &CancellationToken,
) -> Result<bool, Abort> {
    let cfg = &ctx.config;
    let content = owner.render(chrono::Utc::now());
    let io = |what: &str, e: SshError| {
        Abort(HostOutcome::Retry {
            message: format!("{what} {}: {e}", station.halt_flag),
            backoff: backoff(cfg.retry_base, cfg.retry_max, 0),
            status: status::PENDING,
        })
    };
    let started = std::time::Instant::now();
    for cycle in 0..=cfg.halt_wait_cycles {
        let mine = match remote.create_exclusive(&station.halt_flag, content.as_bytes()).await {
            Ok(true) => true,
            Ok(false) => {
                let existing =
                    remote.read_to_vec(&station.halt_flag, 4096).await.map_err(|e| io("reading", e))?;
                match existing.as_deref().and_then(FlagOwner::parse) {
                    // Left by an earlier attempt of this same task (a crash): reclaim it.
                    Some(prev) if prev.task_id == owner.task_id && prev.attempt < owner.attempt => {
                        info!(previous_attempt = prev.attempt, "Reclaiming our own HALT_FLAG.");
                        remote
                            .overwrite(&station.halt_flag, content.as_bytes())
                            .await
                            .map_err(|e| io("rewriting", e))?;
                        true
                    }
                    Some(prev) if prev == *owner => true,
                    None if existing.is_none() => continue, // vanished between create and read
                    _ => false,
                }
            }
            Err(e) => return Err(io("creating", e)),
        };
        if mine {
            // The indexer tests-then-creates: confirm the flag still holds our content.
            let back = remote.read_to_vec(&station.halt_flag, 4096).await.map_err(|e| io("re-reading", e))?;
            if back.as_deref().and_then(FlagOwner::parse).as_ref() == Some(owner) {
                return Ok(true);
            }
        }
        if cycle == cfg.halt_wait_cycles {
            break;
        }
        let wait = random_between(cfg.halt_wait_min, cfg.halt_wait_max);
        info!(
            wait_ms = wait.as_millis() as u64,
            cycle = cycle + 1,
            "The station holds its HALT_FLAG; waiting."
        );
        tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            () = tokio::time::sleep(wait) => {}
        }
    }
    Err(Abort(HostOutcome::Retry {
        message: format!(
            "halt flag alert: the station held {} for {} s ({} checks); nothing copied",
            station.halt_flag,
            started.elapsed().as_secs(),
            cfg.halt_wait_cycles + 1
        ),
        backoff: backoff(cfg.retry_base, cfg.retry_max, 0),
        status: status::ERROR,
    }))
}

fn random_between(min: Duration, max: Duration) -> Duration {
    let span = u64::try_from(max.saturating_sub(min).as_millis()).unwrap_or(0);
    min + Duration::from_millis(jitter_ms(span))
}

/// Keeps the flag fresh until `stop`, so the station's indexer (which deletes flags older than
/// `HALT_TIMEOUT` minutes) never expires it mid-backup; re-creates it if the indexer removed it.
async fn refresh_flag(remote: &Remote, station: &StationConfig, owner: &FlagOwner, stop: &CancellationToken) {
    let every = Duration::from_secs((station.halt_timeout_minutes * 60 / 3).max(20));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {
                let content = owner.render(chrono::Utc::now());
                if let Err(error) = remote.overwrite(&station.halt_flag, content.as_bytes()).await {
                    warn!(%error, "Could not refresh the HALT_FLAG.");
                }
            }
        }
    }
}

/// Removes the flag only if it still carries our content.
async fn lower_flag(remote: &Remote, station: &StationConfig, owner: &FlagOwner) {
    let lower = async {
        match remote.read_to_vec(&station.halt_flag, 4096).await {
            Ok(Some(bytes)) if FlagOwner::parse(&bytes).as_ref() == Some(owner) => {
                if let Err(error) = remote.remove(&station.halt_flag).await {
                    warn!(%error, "Could not lower the HALT_FLAG.");
                }
            }
            Ok(_) => debug!("HALT_FLAG is no longer ours; left alone."),
            Err(error) => warn!(%error, "Could not read the HALT_FLAG to lower it."),
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), lower).await.is_err() {
        warn!("Timed out lowering the HALT_FLAG; the station's indexer will expire it.");
    }
}

/// Steps 3–5, with the flag held.
async fn with_flag(
    ctx: &BackupContext,
    claim: &Claim,
    access: &HostAccess,
    remote: &Remote,
    station: &StationConfig,
    cancel: &CancellationToken,
) -> Result<Tally, Abort> {
    let cfg = &ctx.config;
    let mut tally = Tally::default();
    let ssh_err = |what: String, e: SshError| {
        Abort(HostOutcome::Retry {
            message: format!("{what}: {e}"),
            backoff: backoff(cfg.retry_base, cfg.retry_max, access.failures),
            status: status::PENDING,
        })
    };

    // Take the index under a private name, record it, then remove the private copy.
    let private = format!("{}.appcataloga-{}", station.due_backup, claim.task_id);
    loop {
        if remote.lstat(&private).await.map_err(|e| ssh_err(format!("checking {private}"), e))?.is_none() {
            match remote.rename(&station.due_backup, &private).await {
                Ok(()) => {}
                Err(SshError::NotFound { .. }) => break,
                Err(e) => return Err(ssh_err(format!("taking {}", station.due_backup), e)),
            }
        }
        let bytes = match remote.read_to_vec(&private, cfg.max_index_bytes).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(SshError::TooLarge { .. }) => {
                return Err(Abort(HostOutcome::Retry {
                    message: format!(
                        "the station index {private} is larger than backup.max_index_bytes ({} bytes); left in place for an operator",
                        cfg.max_index_bytes
                    ),
                    backoff: cfg.permanent_retry,
                    status: status::ERROR,
                }));
            }
            Err(e) => return Err(ssh_err(format!("reading {private}"), e)),
        };
        let parsed = index::parse_due_backup(&bytes, &station.local_repo, cfg.max_index_lines);
        if parsed.truncated_lines > 0 {
            warn!(
                ignored_lines = parsed.truncated_lines,
                "Station index longer than backup.max_index_lines."
            );
        }
        for r in parsed.rejected.iter().take(20) {
            warn!(line = r.line, text = %r.text, reason = %r.reason, "Rejected an index line.");
        }
        let reg = ctx.store.register_due_files(claim, &parsed.files, &parsed.rejected).await?;
        tally.rejected += parsed.rejected.len() as u64;
        info!(new = reg.new, known = reg.known, rejected = reg.rejected, "Station index recorded.");
        remote.remove(&private).await.map_err(|e| ssh_err(format!("removing {private}"), e))?;
        if cancel.is_cancelled() {
            return Err(Abort(HostOutcome::Released { message: "interrupted".into() }));
        }
    }

    ctx.store.rearm_copies(claim, cfg.copy_retry_limit).await?;
    let dir = commit::host_tmp_dir(&ctx.repo_root, &access.host_uid);
    let mkdir = dir.clone();
    tokio::task::spawn_blocking(move || std::fs::create_dir_all(&mkdir))
        .await
        .map_err(|e| {
            Abort(HostOutcome::Retry {
                message: e.to_string(),
                backoff: cfg.retry_base,
                status: status::PENDING,
            })
        })?
        .map_err(|e| {
            Abort(HostOutcome::Retry {
                message: format!("cannot create {}: {e}", dir.display()),
                backoff: cfg.permanent_retry,
                status: status::ERROR,
            })
        })?;

    let mut done_paths = Vec::new();
    let result = loop {
        if cancel.is_cancelled() {
            break Err(Abort(HostOutcome::Released { message: "interrupted".into() }));
        }
        let job = match ctx.store.next_copy(claim).await {
            Ok(Some(j)) => j,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let file = format!("{}/{}", job.dir, job.name);
        match copy_one(claim, access, remote, station, &dir, &job, cancel).await {
            Ok(CopyResult::Copied(done)) => {
                tally.copied += 1;
                tally.bytes += done.size;
                if done.note.as_deref() == Some(DEDUP_NOTE) {
                    tally.deduplicated += 1;
                }
                if let Err(e) = ctx.store.complete_copy(claim, &job, &done).await {
                    break Err(e.into());
                }
                ctx.metrics.add_copied(done.size);
                debug!(file = %file, bytes = done.size, "Copied.");
                done_paths.push(file);
            }
            Ok(CopyResult::Skipped { code, message, retry }) => {
                match code {
                    "VANISHED" => tally.vanished += 1,
                    "CHANGED" => tally.changed += 1,
                    "REJECTED" => tally.rejected += 1,
                    _ => tally.failed += 1,
                }
                warn!(file = %file, code, reason = %message, "File not copied.");
                ctx.metrics.inc_backup_error(code);
                let retry_after = retry.then(|| backoff(cfg.retry_base, cfg.retry_max, 0));
                if let Err(e) = ctx.store.fail_copy(claim, &job, code, &message, retry_after, false).await {
                    break Err(e.into());
                }
            }
            Err(CopyAbort { message, put_back }) => {
                let code = if put_back { "INTERRUPTED" } else { "COPY_FAILED" };
                if !put_back {
                    ctx.metrics.inc_backup_error(code);
                }
                let retry_after = Some(backoff(cfg.retry_base, cfg.retry_max, 0));
                let _ = ctx.store.fail_copy(claim, &job, code, &message, retry_after, put_back).await;
                if put_back {
                    break Err(Abort(HostOutcome::Released { message }));
                }
                tally.failed += 1;
                break Err(Abort(HostOutcome::Retry {
                    message,
                    backoff: backoff(cfg.retry_base, cfg.retry_max, access.failures),
                    status: status::PENDING,
                }));
            }
        }
    };
    if !done_paths.is_empty() {
        let mut lines = done_paths.join("\n");
        lines.push('\n');
        if let Err(error) = remote.append(&station.backup_done, lines.as_bytes()).await {
            warn!(%error, path = %station.backup_done, "Could not append to BACKUP_DONE.");
        }
    }
    result.map(|()| tally)
}

const DEDUP_NOTE: &str = "identical file already in the repository";

enum CopyResult {
    Copied(CopyDone),
    Skipped { code: &'static str, message: String, retry: bool },
}

struct CopyAbort {
    message: String,
    /// Interrupted (shutdown/stop): back to pending without counting a failure.
    put_back: bool,
}

#[allow(clippy::too_many_arguments)]
async fn copy_one(
    claim: &Claim,
    access: &HostAccess,
    remote: &Remote,
    station: &StationConfig,
    dir: &std::path::Path,
    job: &CopyJob,
    cancel: &CancellationToken,
) -> Result<CopyResult, CopyAbort> {
    let remote_path = format!("{}/{}", job.dir, job.name);
    let fail = |what: &str, e: &dyn std::fmt::Display| CopyAbort {
        message: format!("Error copying '{remote_path}' from host {}: {what}: {e}", access.address),
        put_back: false,
    };
    // Re-validate: the row may predate a stricter rule, or come from a manual insert.
    if let Err(reason) = index::validate_inside(&remote_path, &station.local_repo) {
        return Ok(CopyResult::Skipped { code: "REJECTED", message: reason, retry: false });
    }
    let before = match remote.lstat(&remote_path).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Ok(CopyResult::Skipped {
                code: "VANISHED",
                message: format!("File '{remote_path}' not found in remote host {}", access.address),
                retry: false,
            });
        }
        Err(e) => return Err(fail("stat", &e)),
    };
    let mut source = remote_path.clone();
    let before = if before.kind == RemoteKind::Symlink {
        let resolved = remote.realpath(&remote_path).await.map_err(|e| fail("resolving a symlink", &e))?;
        if let Err(reason) = index::validate_inside(&resolved, &station.local_repo) {
            return Ok(CopyResult::Skipped {
                code: "REJECTED",
                message: format!("symbolic link to {resolved}: {reason}"),
                retry: false,
            });
        }
        source = resolved;
        match remote.lstat(&source).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Ok(CopyResult::Skipped {
                    code: "VANISHED",
                    message: format!("File '{remote_path}' not found in remote host {}", access.address),
                    retry: false,
                });
            }
            Err(e) => return Err(fail("stat", &e)),
        }
    } else {
        before
    };
    if before.kind != RemoteKind::File {
        return Ok(CopyResult::Skipped {
            code: "REJECTED",
            message: format!("'{remote_path}' is not a regular file"),
            retry: false,
        });
    }

    let temp = commit::partial_path(dir, &job.name, claim.task_id, job.attempt);
    let mut file = tokio::fs::File::create(&temp)
        .await
        .map_err(|e| fail(&format!("creating {}", temp.display()), &e))?;
    let downloaded = tokio::select! {
        () = cancel.cancelled() => {
            drop(file);
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(CopyAbort { message: "interrupted during the copy".into(), put_back: true });
        }
        r = remote.download(&source, &mut file) => r,
    };
    let download = match downloaded {
        Ok(d) => d,
        Err(e) => {
            drop(file);
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(fail("transfer", &e));
        }
    };
    let after = remote.lstat(&source).await;
    let unchanged = matches!(&after, Ok(Some(a)) if a.size == before.size && a.mtime == before.mtime);
    if !unchanged || download.bytes != before.size {
        drop(file);
        let _ = tokio::fs::remove_file(&temp).await;
        return Ok(CopyResult::Skipped {
            code: "CHANGED",
            message: format!(
                "'{remote_path}' changed during the copy ({} bytes before, {} copied); retried on a later backup",
                before.size, download.bytes
            ),
            retry: true,
        });
    }
    if let Err(e) = file.sync_all().await {
        drop(file);
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(fail("fsync", &e));
    }
    drop(file);
    let sha = download.sha256_hex();
    let (t, d, n, s) = (temp.clone(), dir.to_path_buf(), job.name.clone(), sha.clone());
    let published = tokio::task::spawn_blocking(move || commit::publish(&t, &d, &n, &s))
        .await
        .map_err(|e| fail("publish", &e))?
        .map_err(|e| fail("publish", &e))?;
    let note = if published.deduplicated {
        Some(DEDUP_NOTE.to_string())
    } else if published.renamed_for_collision {
        Some(format!("name collision: a different file already had this name; kept as {}", published.name))
    } else {
        None
    };
    Ok(CopyResult::Copied(CopyDone {
        server_dir: dir.display().to_string(),
        server_name: published.name,
        size: download.bytes,
        sha256: sha,
        mtime: before.mtime,
        note,
    }))
}
