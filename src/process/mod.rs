//! The processing stage: turn each copied file into catalogue rows exactly once and file it
//! where people look for it.
//!
//! For each claimed task: read the copy (verifying the SHA-256 recorded by the backup) and parse
//! it off the async runtime; build the catalogue entry (site from the median GPS position and
//! the nearest municipal seat, equipment, procedure, one row per spectrum stream with a natural
//! key); write it in one transaction, which also records where the file will go; move the file
//! atomically (no-clobber link, directory fsyncs) to `<repo>/<YYYY>/<UF>/<county>/<site>/`; mark
//! the task done. A crash between any two steps is repaired by the retry: the catalogue write
//! is idempotent, and a file already at its recorded target is recognised by its hash. A file
//! that is not CRFS (or is unreadable beyond repair) goes to `trash/<host_uid>/` with the reason
//! and leaves no catalogue row. A file without any valid GPS fix is catalogued without a site
//! and filed under `<repo>/<YYYY>/no-gps/<host_uid>/`.

pub mod geocode;
pub mod site;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Datelike;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backup::commit;
use crate::config::ProcessingConfig;
use crate::crfs::{self, FileMetadata};
use crate::store::Store;
use crate::store::catalogue::{CatalogueEntry, GpsSummary, ProcessingJob, SiteInfo, StreamRow};
use site::Seat;

/// Everything the workers need. Cheap to clone.
#[derive(Clone)]
pub struct ProcessContext {
    /// The queue and catalogue.
    pub store: Store,
    /// Settings.
    pub config: Arc<ProcessingConfig>,
    /// Repository root.
    pub repo_root: PathBuf,
    /// This daemon's instance id.
    pub instance: Arc<str>,
    /// Counters exported on `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs `processing.parallelism` workers until `cancel`.
pub async fn run(ctx: ProcessContext, cancel: CancellationToken, tracker: TaskTracker) {
    let host = crate::instance::hostname();
    let prefix = format!("{host}:");
    match ctx.store.requeue_expired_processing(&ctx.instance, Some((&prefix, &ctx.instance))).await {
        Ok(n) if n > 0 => info!(requeued = n, "Requeued processing claimed by a previous run."),
        Ok(_) => {}
        Err(error) => warn!(%error, "Could not requeue earlier processing claims."),
    }
    let seats: Arc<Vec<Seat>> = Arc::new(match ctx.store.load_seats().await {
        Ok(s) => s,
        Err(error) => {
            warn!(%error, "Could not load municipal seats; new sites get no state or county.");
            Vec::new()
        }
    });
    if seats.is_empty() {
        warn!("No municipal seat coordinates in the database: run `appcataloga refdata load DIR`.");
    }
    let workers = if ctx.config.parallelism == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        ctx.config.parallelism
    };
    info!(workers, "Processing workers started.");
    for n in 0..workers {
        let ctx = ctx.clone();
        let seats = Arc::clone(&seats);
        let cancel = cancel.clone();
        tracker.spawn(worker(ctx, seats, cancel, n).instrument(info_span!("process", worker = n)));
    }
}

async fn worker(ctx: ProcessContext, seats: Arc<Vec<Seat>>, cancel: CancellationToken, n: usize) {
    let mut last_reap = std::time::Instant::now();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        // One worker also returns expired claims (dead or hung daemons) to the queue.
        if n == 0 && last_reap.elapsed() >= ctx.config.lease / 2 {
            last_reap = std::time::Instant::now();
            if let Err(error) = ctx.store.requeue_expired_processing(&ctx.instance, None).await {
                debug!(%error, "Processing lease reaper failed.");
            }
        }
        match ctx.store.claim_processing(&ctx.instance, ctx.config.lease).await {
            Ok(Some(job)) => {
                let span = info_span!("file", task_id = job.file_id, host_uid = %job.host_uid, file = %job.station_name);
                process_one(&ctx, &seats, job).instrument(span).await;
            }
            Ok(None) => {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ctx.config.poll_interval) => {}
                }
            }
            Err(error) => {
                warn!(%error, "Could not claim a processing task.");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ctx.config.poll_interval * 2) => {}
                }
            }
        }
    }
}

/// Why a file could not be processed.
enum Failure {
    /// Not a CRFS file, or unreadable: to trash, final.
    Reject { code: &'static str, message: String },
    /// A passing problem (I/O, database): retry later.
    Retry { message: String },
    /// The task was taken over by another worker: write nothing.
    LeaseLost,
}

async fn process_one(ctx: &ProcessContext, seats: &[Seat], job: ProcessingJob) {
    let started = std::time::Instant::now();
    match process(ctx, seats, &job).await {
        Ok(message) => {
            ctx.metrics.inc_processed();
            info!(elapsed_ms = started.elapsed().as_millis() as u64, summary = %message, "File catalogued.");
        }
        Err(Failure::LeaseLost) => warn!("Lease lost: another worker took this file over."),
        Err(Failure::Retry { message }) => {
            ctx.metrics.inc_processing_error("RETRY");
            let delay = ctx
                .config
                .retry_base
                .saturating_mul(1 << job.failures.min(10))
                .min(Duration::from_secs(3600));
            warn!(reason = %message, retry_in_s = delay.as_secs(), "Processing failed; will retry.");
            if let Err(error) = ctx.store.fail_processing(&job, "RETRY", &message, None, Some(delay)).await {
                warn!(%error, "Could not record the failure.");
            }
        }
        Err(Failure::Reject { code, message }) => {
            ctx.metrics.inc_processing_error(code);
            let source = Path::new(&job.server_dir).join(&job.server_name);
            let trash = ctx.repo_root.join("trash").join(commit::safe_component(&job.host_uid));
            let moved = move_to_trash(&source, &trash).await;
            let (dir, name) = match &moved {
                Ok(Some(p)) => (
                    p.parent().map(|d| d.display().to_string()).unwrap_or_default(),
                    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                ),
                Ok(None) | Err(_) => (String::new(), String::new()),
            };
            if let Err(e) = &moved {
                warn!(error = %e, "Could not move the file to trash.");
            }
            let full = format!("Error processing task: {message}");
            warn!(code, reason = %message, trash = %dir, "File rejected.");
            let moved_to = (!dir.is_empty()).then_some((dir.as_str(), name.as_str()));
            if let Err(error) = ctx.store.fail_processing(&job, code, &full, moved_to, None).await {
                warn!(%error, "Could not record the rejection.");
            }
        }
    }
}

async fn move_to_trash(source: &Path, trash: &Path) -> std::io::Result<Option<PathBuf>> {
    let (source, trash) = (source.to_path_buf(), trash.to_path_buf());
    tokio::task::spawn_blocking(move || {
        if !source.exists() {
            return Ok(None);
        }
        std::fs::create_dir_all(&trash)?;
        let sha = commit::sha256_file(&source)?;
        let name =
            source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let published = commit::publish(&source, &trash, &name, &sha)?;
        if let Some(parent) = source.parent() {
            let _ = commit::fsync_dir(parent);
        }
        Ok(Some(published.path))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn process(ctx: &ProcessContext, seats: &[Seat], job: &ProcessingJob) -> Result<String, Failure> {
    let source = Path::new(&job.server_dir).join(&job.server_name);
    // Crash repair: the file may already be at the target an earlier attempt recorded.
    let source_exists = tokio::fs::try_exists(&source).await.unwrap_or(false);
    let read_from = match (&job.target_path, source_exists) {
        (_, true) => source.clone(),
        (Some(target), false) if tokio::fs::try_exists(target).await.unwrap_or(false) => {
            PathBuf::from(target)
        }
        _ => {
            return Err(Failure::Reject {
                code: "MISSING",
                message: format!("the copy {} is missing from the repository", source.display()),
            });
        }
    };
    let path = read_from.clone();
    let expected = job.sha256.clone();
    let parsed = tokio::task::spawn_blocking(move || -> Result<(FileMetadata, String, u64), Failure> {
        let bytes = std::fs::read(&path)
            .map_err(|e| Failure::Retry { message: format!("reading {}: {e}", path.display()) })?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = expected.filter(|e| !e.is_empty())
            && expected != sha
        {
            return Err(Failure::Reject {
                code: "HASH_MISMATCH",
                message: format!(
                    "{} does not match the hash recorded at copy time ({expected}); got {sha}",
                    path.display()
                ),
            });
        }
        let meta = crfs::parse_metadata(&bytes).map_err(|e| Failure::Reject {
            code: match e {
                crfs::CrfsError::TooShort { .. } | crfs::CrfsError::NotCrfs { .. } => "NOT_CRFS",
                crfs::CrfsError::CorruptHeader { .. } => "CORRUPT_HEADER",
                crfs::CrfsError::NoReadableBlock { .. } => "NO_READABLE_BLOCK",
            },
            message: e.to_string(),
        })?;
        Ok((meta, sha, bytes.len() as u64))
    })
    .await
    .map_err(|e| Failure::Retry { message: format!("parser task: {e}") })??;
    let (meta, sha, size) = parsed;
    let mut entry = build_entry(ctx, seats, job, &meta, &sha, size);
    // The optional geocoder is asked only for a new place, outside any transaction.
    if let (Some(url), Some(gps)) = (&ctx.config.nominatim_url, entry.gps)
        && !ctx.store.site_near(gps.latitude, gps.longitude, entry.tolerance).await.unwrap_or(true)
    {
        match geocode::district(url, gps.latitude, gps.longitude, ctx.config.geocoder_timeout).await {
            Ok(d) => {
                debug!(district = ?d, "Geocoder answered.");
                entry.district = d;
            }
            Err(error) => warn!(%error, "No district from the geocoder; the site is created without one."),
        }
    }
    let year = file_year(&meta, job);
    let repo_root = ctx.repo_root.clone();
    let host_uid = job.host_uid.clone();
    let name = job.station_name.clone();
    let sha_for_place = sha.clone();
    let earlier_target = job.target_path.clone();
    let catalogued = ctx
        .store
        .catalogue_file(job, &entry, move |site| {
            let dir = target_dir(&repo_root, year, site, &host_uid);
            // Keep an earlier attempt's choice; otherwise never reuse a name taken by other content.
            if let Some(t) = earlier_target.as_deref().map(Path::new)
                && t.parent() == Some(dir.as_path())
                && let Some(n) = t.file_name()
            {
                return (dir.display().to_string(), n.to_string_lossy().into_owned());
            }
            let name = free_name(&dir, &name, &sha_for_place);
            (dir.display().to_string(), name)
        })
        .await
        .map_err(|e| {
            if e.is_lease_lost() { Failure::LeaseLost } else { Failure::Retry { message: e.to_string() } }
        })?;
    let (dir, name) = catalogued.target.clone();

    // Move (or confirm an earlier move).
    let (from, to_dir, to_name, hash) = (read_from.clone(), PathBuf::from(&dir), name.clone(), sha.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let target = to_dir.join(&to_name);
        if from == target {
            return Ok(());
        }
        std::fs::create_dir_all(&to_dir)?;
        let published = commit::publish(&from, &to_dir, &to_name, &hash)?;
        if published.path != target {
            return Err(std::io::Error::other(format!(
                "{} appeared meanwhile with other content; retrying",
                target.display()
            )));
        }
        if let Some(parent) = from.parent() {
            commit::fsync_dir(parent)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Failure::Retry { message: e.to_string() })?
    .map_err(|e| Failure::Retry { message: format!("moving to {dir}/{name}: {e}") })?;

    let site = match &catalogued.site {
        Some(s) => format!(
            "site {}{} ({}/{})",
            s.id,
            if s.created { " (new)" } else { "" },
            s.state_code.as_deref().unwrap_or("?"),
            s.county.map(|c| c.to_string()).unwrap_or_else(|| "?".into())
        ),
        None => "no GPS fix: no site".into(),
    };
    let message = format!(
        "Processed: {} spectra ({} new), {site}; filed at {dir}/{name}",
        catalogued.new_spectra + catalogued.known_spectra,
        catalogued.new_spectra
    );
    ctx.store.finish_processing(job, &dir, &name, &message).await.map_err(|e| {
        if e.is_lease_lost() { Failure::LeaseLost } else { Failure::Retry { message: e.to_string() } }
    })?;
    debug!(spectra = catalogued.new_spectra, "Done.");
    Ok(message)
}

/// `<repo>/<YYYY>/<UF>/<county>/<site>` or `<repo>/<YYYY>/no-gps/<host_uid>`.
fn target_dir(root: &Path, year: i32, site: Option<&SiteInfo>, host_uid: &str) -> PathBuf {
    let y = root.join(format!("{year:04}"));
    match site {
        Some(s) => y
            .join(s.state_code.as_deref().map(commit::safe_component).unwrap_or_else(|| "no-state".into()))
            .join(s.county.map(|c| c.to_string()).unwrap_or_else(|| "no-county".into()))
            .join(s.id.to_string()),
        None => y.join("no-gps").join(commit::safe_component(host_uid)),
    }
}

/// `name` if free (or holding the same content), else `stem.<hash>.ext`.
fn free_name(dir: &Path, name: &str, sha: &str) -> String {
    let name = commit::safe_component(name);
    let p = dir.join(&name);
    match commit::sha256_file(&p) {
        Err(_) => name,
        Ok(existing) if existing == sha => name,
        Ok(_) => match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{}.{ext}", &sha[..12]),
            _ => format!("{name}.{}", &sha[..12]),
        },
    }
}

/// The year a file is filed under: its first sweep, else its first GPS or text time, else the
/// day it was listed.
fn file_year(meta: &FileMetadata, job: &ProcessingJob) -> i32 {
    meta.spectra
        .iter()
        .map(|s| s.first_sweep)
        .min()
        .or_else(|| meta.gps.samples.iter().filter_map(|g| g.wall_time.or(g.gps_time)).min())
        .or_else(|| meta.texts.iter().filter_map(|t| t.time).min())
        .map(|t| t.year())
        .unwrap_or(job.listed_year)
}

fn build_entry(
    ctx: &ProcessContext,
    seats: &[Seat],
    job: &ProcessingJob,
    meta: &FileMetadata,
    sha: &str,
    size: u64,
) -> CatalogueEntry {
    let receiver = meta
        .equipment
        .hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(&job.host_uid)
        .to_lowercase();
    // RFeye serial: the digits after "rfeye" (the original used receiver[5:]).
    let serial = receiver.strip_prefix("rfeye").unwrap_or(&receiver).to_string();
    let mut inputs: Vec<u8> = meta.spectra.iter().map(|s| s.antenna).collect();
    inputs.sort_unstable();
    inputs.dedup();
    let antennas = inputs.into_iter().map(|a| (a, format!("acc_ant[{a}]_{serial}"))).collect();
    let gps = meta.gps.median.map(|m| {
        let valid: Vec<_> = meta.gps.samples.iter().filter(|s| s.fix != 0).collect();
        GpsSummary {
            latitude: m.latitude,
            longitude: m.longitude,
            altitude: m.altitude,
            samples: valid.len() as u64,
            sum_latitude: valid.iter().map(|s| s.latitude).sum(),
            sum_longitude: valid.iter().map(|s| s.longitude).sum(),
            sum_altitude: valid.iter().map(|s| s.altitude_m).sum(),
        }
    });
    let seat = gps.and_then(|g| site::nearest_seat(seats, g.latitude, g.longitude).cloned());
    let streams = meta
        .spectra
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let description =
                s.description.clone().or_else(|| meta.thread_descriptions.get(&s.thread_id).cloned());
            let mut h = Sha256::new();
            h.update(sha.as_bytes());
            h.update(format!(
                "|{i}|{}|{}|{:.9}|{:.9}|{}|{}|{}",
                s.block_type, s.thread_id, s.start_mhz, s.stop_mhz, s.points, s.first_sweep, s.last_sweep
            ));
            StreamRow {
                key: h.finalize().into(),
                description,
                start_mhz: s.start_mhz,
                stop_mhz: s.stop_mhz,
                first_sweep: s.first_sweep,
                last_sweep: s.last_sweep,
                trace_count: s.trace_count,
                points: s.points,
                rbw_hz: s.rbw_hz,
                unit: s.unit.clone(),
                trace_type: s.processing.clone(),
                thread_id: s.thread_id,
                block_type: s.block_type,
                antenna: s.antenna,
            }
        })
        .collect();
    CatalogueEntry {
        receiver,
        antennas,
        procedure: meta
            .procedure
            .method
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        gps,
        seat,
        streams,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        sha256: sha.to_string(),
        repo_volume: ctx.config.repository_volume.clone(),
        tolerance: ctx.config.site_tolerance_deg,
        max_site_samples: ctx.config.max_site_samples,
        district: None,
    }
}
