//! In-process counters for the observability endpoint (`/metrics`, see [`crate::http`]).
//!
//! Why: the database knows the state of the queue (depths, hosts by condition), but not what
//! this process did since it started: gateway requests and their latency, bytes and files
//! copied, files processed, failures by kind. Those are counted here, in plain atomics, by the
//! stages that do the work, and rendered in the Prometheus text exposition format.
//!
//! What it must not do: block, allocate per observation on the hot path, or grow without
//! bound. Every series is fixed at compile time except the error kinds, which are capped at
//! [`MAX_ERROR_KINDS`] distinct names per family (the excess is counted under `other`), so a
//! caller that passes unexpected strings cannot blow up the exposition. Nothing here panics
//! (a poisoned lock is recovered, counters saturate instead of overflowing where it matters).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::gateway::protocol::Command;

/// Upper bounds (inclusive, in milliseconds) of the gateway latency histogram buckets; a final
/// `+Inf` bucket follows.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// Distinct error kinds remembered per family; later kinds are counted as `other`.
pub const MAX_ERROR_KINDS: usize = 32;

/// Longest error-kind label kept (longer ones are cut).
const MAX_KIND_LEN: usize = 64;

/// The label values of the gateway `command` label, in rendering order.
const COMMANDS: [&str; 4] = ["backup", "stop", "status", "invalid"];

fn command_index(command: Option<Command>) -> usize {
    match command {
        Some(Command::Backup) => 0,
        Some(Command::Stop) => 1,
        Some(Command::Status) => 2,
        None => 3,
    }
}

/// A latency histogram: per-bucket (non-cumulative) counts and the sum in microseconds.
#[derive(Debug, Default)]
struct Histogram {
    /// `LATENCY_BUCKETS_MS.len()` finite buckets, then `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ms| us <= ms.saturating_mul(1000))
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        // Saturating add: a wrapped sum would be worse than a stuck one.
        let _ =
            self.sum_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(s.saturating_add(us)));
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut running = 0u64;
        for b in &self.buckets {
            running = running.saturating_add(b.load(Ordering::Relaxed));
            cumulative.push(running);
        }
        HistogramSnapshot { cumulative, count: running, sum_us: self.sum_us.load(Ordering::Relaxed) }
    }
}

/// A bounded set of named counters (error kinds).
#[derive(Debug, Default)]
struct KindCounters {
    kinds: Mutex<Vec<(String, u64)>>,
}

impl KindCounters {
    fn inc(&self, kind: &str) {
        let kind = sanitize_kind(kind);
        let mut kinds = self.kinds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = kinds.iter_mut().find(|(k, _)| *k == kind) {
            entry.1 = entry.1.saturating_add(1);
            return;
        }
        let kind = if kinds.len() < MAX_ERROR_KINDS - 1 || kind == "other" { kind } else { "other".into() };
        if let Some(entry) = kinds.iter_mut().find(|(k, _)| *k == kind) {
            entry.1 = entry.1.saturating_add(1);
        } else {
            kinds.push((kind, 1));
        }
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let mut v = self.kinds.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        v.sort();
        v
    }
}

/// Keeps `[A-Za-z0-9_.-]`, cut to [`MAX_KIND_LEN`]; an empty kind becomes `unspecified`.
fn sanitize_kind(kind: &str) -> String {
    let s: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(MAX_KIND_LEN)
        .collect();
    if s.is_empty() { "unspecified".into() } else { s }
}

/// Counters of this process since it started. Shared as `Arc<Metrics>`; every method takes
/// `&self` and never blocks (the error-kind maps hold a short, uncontended `std` mutex).
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[command][0 = ok, 1 = error]`.
    gateway_requests: [[AtomicU64; 2]; COMMANDS.len()],
    gateway_latency: [Histogram; COMMANDS.len()],
    bytes_copied: AtomicU64,
    files_copied: AtomicU64,
    files_processed: AtomicU64,
    backup_errors: KindCounters,
    processing_errors: KindCounters,
}

/// A consistent-enough copy of the counters (each value is read atomically; the set is not a
/// single snapshot, which Prometheus tolerates).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// `(command, outcome, count)`; command in `backup|stop|status|invalid`, outcome `ok|error`.
    pub gateway_requests: Vec<(&'static str, &'static str, u64)>,
    /// Latency histogram per command (same order as [`LATENCY_BUCKETS_MS`] plus `+Inf`).
    pub gateway_latency: Vec<(&'static str, HistogramSnapshot)>,
    /// Bytes copied from stations.
    pub bytes_copied: u64,
    /// Files copied from stations.
    pub files_copied: u64,
    /// Files catalogued.
    pub files_processed: u64,
    /// Failed copies by kind.
    pub backup_errors: Vec<(String, u64)>,
    /// Failed cataloguing by kind.
    pub processing_errors: Vec<(String, u64)>,
}

/// One histogram's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts: `cumulative[i]` observations ≤ `LATENCY_BUCKETS_MS[i]`; the last is `+Inf`.
    pub cumulative: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in microseconds.
    pub sum_us: u64,
}

impl Metrics {
    /// Fresh counters, all zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// One answered gateway request: `command` is `None` when the request could not be parsed;
    /// `ok` is `false` when the reply was an error reply; `elapsed` from accept to reply sent.
    pub fn record_gateway(&self, command: Option<Command>, ok: bool, elapsed: Duration) {
        let i = command_index(command);
        if let Some(row) = self.gateway_requests.get(i) {
            row[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.gateway_latency.get(i) {
            h.observe(elapsed);
        }
    }

    /// One file copied from a station (verified and recorded), `bytes` long.
    pub fn add_copied(&self, bytes: u64) {
        let _ = self
            .bytes_copied
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_add(bytes)));
        self.files_copied.fetch_add(1, Ordering::Relaxed);
    }

    /// One file catalogued.
    pub fn inc_processed(&self) {
        self.files_processed.fetch_add(1, Ordering::Relaxed);
    }

    /// One failed copy (or failed host backup) of the given kind, e.g. the `NA_ERROR_CODE`
    /// written with it (`COPY_FAILED`, `AUTH`, …). Kinds are sanitised and capped.
    pub fn inc_backup_error(&self, kind: &str) {
        self.backup_errors.inc(kind);
    }

    /// One failed cataloguing of the given kind (its `NA_ERROR_CODE`). Kinds are sanitised and capped.
    pub fn inc_processing_error(&self, kind: &str) {
        self.processing_errors.inc(kind);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut gateway_requests = Vec::with_capacity(COMMANDS.len() * 2);
        for (cmd, row) in COMMANDS.iter().zip(&self.gateway_requests) {
            gateway_requests.push((*cmd, "ok", row[0].load(Ordering::Relaxed)));
            gateway_requests.push((*cmd, "error", row[1].load(Ordering::Relaxed)));
        }
        MetricsSnapshot {
            gateway_requests,
            gateway_latency: COMMANDS
                .iter()
                .zip(&self.gateway_latency)
                .map(|(c, h)| (*c, h.snapshot()))
                .collect(),
            bytes_copied: self.bytes_copied.load(Ordering::Relaxed),
            files_copied: self.files_copied.load(Ordering::Relaxed),
            files_processed: self.files_processed.load(Ordering::Relaxed),
            backup_errors: self.backup_errors.snapshot(),
            processing_errors: self.processing_errors.snapshot(),
        }
    }

    /// Appends this process's counters to a Prometheus text exposition.
    pub fn render(&self, out: &mut Exposition) {
        let s = self.snapshot();
        out.family(
            "appcataloga_gateway_requests_total",
            "Zabbix gateway requests answered, by command and outcome.",
            "counter",
        );
        for (cmd, outcome, n) in &s.gateway_requests {
            out.sample("appcataloga_gateway_requests_total", &[("command", cmd), ("outcome", outcome)], *n);
        }
        out.family(
            "appcataloga_gateway_request_duration_seconds",
            "Time from accepting a Zabbix gateway connection to sending its reply.",
            "histogram",
        );
        for (cmd, h) in &s.gateway_latency {
            for (i, n) in h.cumulative.iter().enumerate() {
                let le = match LATENCY_BUCKETS_MS.get(i) {
                    Some(ms) => format_seconds_ms(*ms),
                    None => "+Inf".to_string(),
                };
                out.sample(
                    "appcataloga_gateway_request_duration_seconds_bucket",
                    &[("command", cmd), ("le", &le)],
                    *n,
                );
            }
            out.sample_f64(
                "appcataloga_gateway_request_duration_seconds_sum",
                &[("command", cmd)],
                h.sum_us as f64 / 1e6,
            );
            out.sample("appcataloga_gateway_request_duration_seconds_count", &[("command", cmd)], h.count);
        }
        out.family(
            "appcataloga_copied_bytes_total",
            "Bytes copied from stations by this process.",
            "counter",
        );
        out.sample("appcataloga_copied_bytes_total", &[], s.bytes_copied);
        out.family(
            "appcataloga_copied_files_total",
            "Files copied from stations by this process.",
            "counter",
        );
        out.sample("appcataloga_copied_files_total", &[], s.files_copied);
        out.family("appcataloga_processed_files_total", "Files catalogued by this process.", "counter");
        out.sample("appcataloga_processed_files_total", &[], s.files_processed);
        out.family("appcataloga_backup_errors_total", "Failed copies by this process, by kind.", "counter");
        for (kind, n) in &s.backup_errors {
            out.sample("appcataloga_backup_errors_total", &[("kind", kind)], *n);
        }
        out.family(
            "appcataloga_processing_errors_total",
            "Failed cataloguing by this process, by kind.",
            "counter",
        );
        for (kind, n) in &s.processing_errors {
            out.sample("appcataloga_processing_errors_total", &[("kind", kind)], *n);
        }
    }
}

/// `1` ms → `"0.001"`: the bucket bound in seconds, exactly.
fn format_seconds_ms(ms: u64) -> String {
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{secs}")
    } else {
        let f = format!("{frac:03}");
        format!("{secs}.{}", f.trim_end_matches('0'))
    }
}

/// A Prometheus text exposition (format 0.0.4) being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// The `Content-Type` of the exposition.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One integer sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    /// One signed integer sample (gauges read from the database).
    pub fn sample_i64(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    /// One floating-point sample.
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        if value.is_finite() {
            let _ = writeln!(self.text, " {value}");
        } else if value.is_nan() {
            self.text.push_str(" NaN\n");
        } else if value > 0.0 {
            self.text.push_str(" +Inf\n");
        } else {
            self.text.push_str(" -Inf\n");
        }
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(k);
            self.text.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The finished exposition.
    pub fn into_string(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let m = Metrics::new();
        m.record_gateway(Some(Command::Status), true, Duration::from_micros(1000)); // le 1 ms
        m.record_gateway(Some(Command::Status), true, Duration::from_micros(1001)); // le 2 ms
        m.record_gateway(Some(Command::Status), false, Duration::from_millis(30)); // le 50 ms
        m.record_gateway(Some(Command::Status), true, Duration::from_secs(5)); // +Inf
        let s = m.snapshot();
        let (_, h) = s.gateway_latency.iter().find(|(c, _)| *c == "status").unwrap();
        assert_eq!(h.cumulative, vec![1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_us, 1000 + 1001 + 30_000 + 5_000_000);
        assert!(s.gateway_requests.contains(&("status", "ok", 3)));
        assert!(s.gateway_requests.contains(&("status", "error", 1)));
        assert!(s.gateway_requests.contains(&("invalid", "ok", 0)));
    }

    #[test]
    fn error_kinds_are_sanitised_and_capped() {
        let m = Metrics::new();
        m.inc_backup_error("AUTH");
        m.inc_backup_error("AUTH");
        m.inc_backup_error("bad\"kind\n");
        m.inc_backup_error("");
        for i in 0..100 {
            m.inc_backup_error(&format!("K{i}"));
        }
        let s = m.snapshot();
        assert!(s.backup_errors.len() <= MAX_ERROR_KINDS);
        assert!(s.backup_errors.contains(&("AUTH".into(), 2)));
        assert!(s.backup_errors.contains(&("badkind".into(), 1)));
        assert!(s.backup_errors.contains(&("unspecified".into(), 1)));
        let total: u64 = s.backup_errors.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 104);
    }

    #[test]
    fn copied_counts_files_and_bytes() {
        let m = Metrics::new();
        m.add_copied(10);
        m.add_copied(u64::MAX);
        m.inc_processed();
        let s = m.snapshot();
        assert_eq!((s.bytes_copied, s.files_copied, s.files_processed), (u64::MAX, 2, 1));
    }

    #[test]
    fn bucket_bounds_render_in_seconds() {
        let got: Vec<String> = LATENCY_BUCKETS_MS.iter().map(|ms| format_seconds_ms(*ms)).collect();
        assert_eq!(got, ["0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"]);
    }

    #[test]
    fn exposition_escapes_label_values() {
        let mut e = Exposition::new();
        e.family("x_total", "help\\me", "counter");
        e.sample("x_total", &[("k", "a\"b\\c\nd")], 3);
        assert_eq!(
            e.as_str(),
            "# HELP x_total help\\\\me\n# TYPE x_total counter\nx_total{k=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }
}
