//! `appcataloga bench crfs`: measures the CRFS metadata parser's throughput.
//!
//! It optionally generates a realistic v5 file (about 100 MB, the logger's maximum file size)
//! with [`crate::crfs::generator`], reads every file into memory once (so the disk is out of the
//! measurement), parses each one repeatedly on one core (metadata only, then with level decode),
//! and prints MB/s and files/s. With `rfpye_python` it also times rfpye 0.3.7's `parse_bin` on
//! the same files and prints the speed ratio. This is a command, not a test: it lives at the
//! binary edge, hence `anyhow`.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::crfs::{self, ParseOptions, generator};

/// Arguments of `appcataloga bench crfs`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CrfsBenchArgs {
    /// Existing `.bin` files to measure.
    pub files: Vec<PathBuf>,
    /// When > 0, also generate a realistic v5 file of about this many MB (10^6 bytes) in a
    /// temporary directory (removed afterwards) and measure it.
    #[arg(long, default_value_t = 100)]
    pub generate_mb: u64,
    /// Parses per file and mode (at least 1).
    #[arg(long, default_value_t = 10)]
    pub iterations: u32,
    /// A Python interpreter with rfpye 0.3.7 installed; when given, rfpye is timed too.
    #[arg(long)]
    pub rfpye_python: Option<PathBuf>,
}

/// Removes the generated file's directory when the benchmark ends, even on error.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Timing {
    per_parse: Duration,
}

fn time_parse(bytes: &[u8], options: ParseOptions, iterations: u32) -> anyhow::Result<Timing> {
    // One untimed parse to warm caches and fail early on an unreadable file.
    let meta = crfs::parse(bytes, options).context("parse failed")?;
    std::hint::black_box(&meta);
    drop(meta);
    let start = Instant::now();
    for _ in 0..iterations {
        let meta = crfs::parse(std::hint::black_box(bytes), options)?;
        std::hint::black_box(&meta);
    }
    Ok(Timing { per_parse: start.elapsed() / iterations })
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-12)
}

/// Runs the benchmark and prints its report on stdout.
pub fn run(args: &CrfsBenchArgs) -> anyhow::Result<()> {
    let iterations = args.iterations.max(1);
    let mut files = args.files.clone();
    let mut _temp = None;
    if args.generate_mb > 0 {
        let dir = std::env::temp_dir().join(format!(
            "appcataloga-bench-crfs-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = TempDir(dir.clone());
        let path = dir.join("rfeye002292_210211_T111912.bin");
        let spec = generator::realistic_v5(args.generate_mb.saturating_mul(1_000_000), 1);
        let started = Instant::now();
        let mut w =
            BufWriter::new(File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        let n = generator::write(&spec, &mut w).context("generating the realistic v5 file")?;
        w.flush()?;
        println!(
            "generated {} ({:.1} MB, {} threads, points {:?}) in {:.2} s",
            path.display(),
            n as f64 / 1e6,
            spec.streams.len(),
            spec.streams.iter().map(|s| s.points).collect::<Vec<_>>(),
            started.elapsed().as_secs_f64()
        );
        files.push(path);
        _temp = Some(guard);
    }
    if files.is_empty() {
        bail!("nothing to measure: give CRFS files or --generate-mb");
    }

    println!(
        "{:<48} {:>9} {:>12} {:>10} {:>12} {:>10}",
        "file", "MB", "meta MB/s", "files/s", "levels MB/s", "files/s"
    );
    let mut ours = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let meta = time_parse(&bytes, ParseOptions::default(), iterations)
            .with_context(|| format!("parsing {}", path.display()))?;
        let full = time_parse(&bytes, ParseOptions { decode_levels: true }, iterations)
            .with_context(|| format!("parsing {} with level decode", path.display()))?;
        println!(
            "{:<48} {:>9.2} {:>12.0} {:>10.1} {:>12.0} {:>10.1}",
            short_name(path),
            bytes.len() as f64 / 1e6,
            mb_per_s(bytes.len(), meta.per_parse),
            1.0 / meta.per_parse.as_secs_f64().max(1e-12),
            mb_per_s(bytes.len(), full.per_parse),
            1.0 / full.per_parse.as_secs_f64().max(1e-12),
        );
        ours.push((path.clone(), bytes.len(), meta.per_parse));
    }

    if let Some(python) = &args.rfpye_python {
        let rfpye = time_rfpye(python, &files, iterations)?;
        println!("{:<48} {:>12} {:>12} {:>10}", "file", "rfpye s", "ours s", "speed-up");
        for ((path, _, our), their) in ours.iter().zip(rfpye) {
            println!(
                "{:<48} {:>12.4} {:>12.6} {:>9.0}×",
                short_name(path),
                their,
                our.as_secs_f64(),
                their / our.as_secs_f64().max(1e-12)
            );
        }
    }
    Ok(())
}

fn short_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// rfpye 0.3.7 raises on import under Python ≥ 3.10 (it compares `float("3.11"[:3])`); fake
/// `platform.python_version()` during the import only, like upstream's fix b22d8e7.
const RFPYE_SCRIPT: &str = r#"
import platform, sys, time
real = platform.python_version
platform.python_version = lambda: "3.9.99"
try:
    from rfpye.parser import parse_bin
finally:
    platform.python_version = real
n = int(sys.argv[1])
for f in sys.argv[2:]:
    parse_bin(f)
    t = time.perf_counter()
    for _ in range(n):
        parse_bin(f)
    print((time.perf_counter() - t) / n, flush=True)
"#;

/// Seconds per `parse_bin` call for each file.
fn time_rfpye(python: &Path, files: &[PathBuf], iterations: u32) -> anyhow::Result<Vec<f64>> {
    let out = Command::new(python)
        .arg("-c")
        .arg(RFPYE_SCRIPT)
        .arg(iterations.to_string())
        .args(files)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "rfpye timing failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        );
    }
    let times: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    if times.len() != files.len() {
        bail!("rfpye printed {} timings for {} files", times.len(), files.len());
    }
    Ok(times)
}
