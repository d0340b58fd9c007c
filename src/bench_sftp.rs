//! `appcataloga bench sftp`: our SFTP download against OpenSSH's `sftp` and `scp` (a benchmark,
//! not a test).
//!
//! One simulated station (real OpenSSH sshd, see [`crate::station`]), one file of `--size-mib`,
//! key authentication with a generated key. Each tool downloads the same file to a local file,
//! end to end including connect, and the local file is fsynced before the clock stops (ours
//! does it itself; for OpenSSH the fsync runs right after the tool exits, inside the timing).
//! The station file is in the page cache for every run (all tools alike). Then the same through
//! a delay proxy adding `2 × --delay-ms` of round-trip time. Prints median MB/s and the ratio.
//!
//! What it must not do: disable host-key checking for our client (we pin the station's key like
//! production does; only the OpenSSH tools run with `StrictHostKeyChecking=no`), or leave the
//! station, keys or 1 GiB copies behind (all under one folder removed at the end).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::Digest;

use crate::backup::ssh::{self, Auth, ConnectParams, HostKeyPolicy, SshOptions};
use crate::station::{Station, StationSpec, generate_ed25519, proxy::DelayProxy};

/// Options of the SFTP benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct SftpBenchArgs {
    /// Size of the file downloaded, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Runs per tool and network (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// One-way delay of the proxy in ms (round trip = 2×); 0 skips the delayed network.
    #[arg(long, default_value_t = 25)]
    pub delay_ms: u64,
    /// File size for the delayed network, in MiB (default: same as --size-mib).
    #[arg(long)]
    pub delayed_size_mib: Option<u64>,
    /// Our SFTP read size, in KiB.
    #[arg(long, default_value_t = 256)]
    pub read_chunk_kib: u32,
    /// Our outstanding SFTP reads.
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Our SSH channel window, in MiB.
    #[arg(long, default_value_t = 16)]
    pub window_mib: u32,
    /// Also run OpenSSH with this cipher (e.g. aes256-gcm@openssh.com), besides its default.
    #[arg(long)]
    pub openssh_cipher: Option<String>,
    /// Skip scp.
    #[arg(long)]
    pub skip_scp: bool,
    /// Working folder for the local copies (default: a folder beside the station trees).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

struct Ctx {
    station: Station,
    key: PathBuf,
    work: PathBuf,
    remote: String,
    size: u64,
    sha256: [u8; 32],
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

async fn fsync_file(path: &Path) -> anyhow::Result<()> {
    let f = tokio::fs::File::open(path).await?;
    f.sync_all().await?;
    Ok(())
}

async fn run_ours(ctx: &Ctx, port: u16, args: &SftpBenchArgs) -> anyhow::Result<Duration> {
    let params = ConnectParams {
        host: "127.0.0.1".into(),
        port,
        user: ctx.station.user().into(),
        auth: Auth::KeyFile(ctx.key.clone()),
        pinned_fingerprint: Some(ctx.station.host_key_fingerprint()?),
        policy: HostKeyPolicy::Strict,
    };
    let opts = SshOptions {
        read_chunk: args.read_chunk_kib * 1024,
        max_inflight_reads: args.inflight,
        window_size: args.window_mib * 1024 * 1024,
        ..SshOptions::default()
    };
    let local = ctx.work.join("ours.bin");
    let t = Instant::now();
    let remote = ssh::connect(&params, &opts).await?;
    let mut f = tokio::fs::File::create(&local).await?;
    let d = remote.download(&ctx.remote, &mut f).await?;
    f.sync_all().await?;
    let elapsed = t.elapsed();
    remote.close().await;
    drop(f);
    if d.bytes != ctx.size || d.sha256 != ctx.sha256 {
        bail!("our download is wrong: {} bytes, sha256 {}", d.bytes, d.sha256_hex());
    }
    tokio::fs::remove_file(&local).await?;
    Ok(elapsed)
}

fn openssh_opts(ctx: &Ctx, cipher: Option<&str>) -> Vec<String> {
    let mut v = vec![
        "-i".to_string(),
        ctx.key.display().to_string(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ];
    if let Some(c) = cipher {
        v.push("-c".into());
        v.push(c.into());
    }
    v
}

async fn run_openssh(ctx: &Ctx, port: u16, tool: &str, cipher: Option<&str>) -> anyhow::Result<Duration> {
    let local = ctx.work.join(format!("{tool}.bin"));
    let _ = tokio::fs::remove_file(&local).await;
    let user_host = format!("{}@127.0.0.1", ctx.station.user());
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(openssh_opts(ctx, cipher));
    match tool {
        "sftp" => {
            let batch = ctx.work.join("batch");
            tokio::fs::write(&batch, format!("get {} {}\n", ctx.remote, local.display())).await?;
            cmd.arg("-P").arg(port.to_string()).arg("-b").arg(&batch).arg(&user_host);
        }
        _ => {
            cmd.arg("-P").arg(port.to_string()).arg(format!("{user_host}:{}", ctx.remote)).arg(&local);
        }
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let t = Instant::now();
    let out = cmd.output().await.with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    fsync_file(&local).await?;
    let elapsed = t.elapsed();
    let len = tokio::fs::metadata(&local).await?.len();
    if len != ctx.size {
        bail!("{tool} copied {len} bytes, expected {}", ctx.size);
    }
    tokio::fs::remove_file(&local).await?;
    Ok(elapsed)
}

async fn round(
    ctx: &Ctx,
    port: u16,
    label: &str,
    args: &SftpBenchArgs,
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut tools: Vec<(String, Option<String>)> = vec![("sftp".into(), None)];
    if !args.skip_scp {
        tools.push(("scp".into(), None));
    }
    if let Some(c) = &args.openssh_cipher {
        tools.push(("sftp".into(), Some(c.clone())));
        if !args.skip_scp {
            tools.push(("scp".into(), Some(c.clone())));
        }
    }
    let mut ours = Vec::new();
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    for run in 0..args.runs.max(1) {
        // Interleave the tools so that machine noise hits all of them alike.
        let d = run_ours(ctx, port, args).await?;
        ours.push(mbps(ctx.size, d));
        for (i, (tool, cipher)) in tools.iter().enumerate() {
            let d = run_openssh(ctx, port, tool, cipher.as_deref()).await?;
            theirs[i].push(mbps(ctx.size, d));
        }
        eprintln!("  {label}: run {} done", run + 1);
    }
    let mut rows = vec![("appcataloga download".to_string(), median(ours))];
    for ((tool, cipher), v) in tools.iter().zip(theirs) {
        let name = match cipher {
            Some(c) => format!("OpenSSH {tool} -c {c}"),
            None => format!("OpenSSH {tool} (default cipher)"),
        };
        rows.push((name, median(v)));
    }
    Ok(rows)
}

fn print_rows(label: &str, size: u64, rows: &[(String, f64)]) {
    println!(
        "\n{label}: {:.0} MiB, end to end incl. connect and fsync, median MB/s (1 MB = 10^6 B)",
        size as f64 / 1048576.0
    );
    let ours = rows.first().map(|r| r.1).unwrap_or(0.0);
    for (name, v) in rows {
        let ratio = if *v > 0.0 { ours / v } else { 0.0 };
        println!("  {name:<42} {v:>9.1} MB/s   ours/this = {ratio:.2}x");
    }
}

async fn prepare(args: &SftpBenchArgs) -> anyhow::Result<Ctx> {
    let work = args.work_dir.clone().unwrap_or_else(|| {
        crate::station::default_base_dir().with_file_name("bench-sftp").join(std::process::id().to_string())
    });
    tokio::fs::create_dir_all(&work).await?;
    let key = work.join("id_ed25519");
    let size = args.size_mib * 1024 * 1024;
    let (k2, w2) = (key.clone(), work.clone());
    let (station, remote, sha256) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        generate_ed25519(&k2, "appcataloga-bench")?;
        let pubkey = w2.join("id_ed25519.pub");
        let station =
            Station::start(StationSpec::new("bench").with_password(None).with_authorized_key(&pubkey))?;
        let remote = station.add_random_file("bench.bin", size, 42)?;
        let mut h = sha2::Sha256::new();
        let mut f = std::fs::File::open(station.path(&remote))?;
        std::io::copy(&mut f, &mut h)?;
        Ok((station, remote, <[u8; 32]>::from(h.finalize())))
    })
    .await??;
    Ok(Ctx { station, key, work, remote, size, sha256 })
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: SftpBenchArgs) -> anyhow::Result<()> {
    let mut ctx = prepare(&args).await?;
    let work = ctx.work.clone();
    let result = async {
        println!(
            "sftp benchmark: station sshd on 127.0.0.1:{} (OpenSSH, chroot, internal-sftp), ours: \
             read {} KiB x {} in flight, window {} MiB, AES-GCM preferred; build: {}",
            ctx.station.port(),
            args.read_chunk_kib,
            args.inflight,
            args.window_mib,
            if cfg!(debug_assertions) { "DEBUG (figures are not representative)" } else { "release" }
        );
        let rows = round(&ctx, ctx.station.port(), "loopback", &args).await?;
        print_rows("loopback", ctx.size, &rows);
        if args.delay_ms > 0 {
            if let Some(mib) = args.delayed_size_mib
                && mib != args.size_mib
            {
                let size = mib * 1024 * 1024;
                let (remote, sha) = {
                    let st = &ctx.station;
                    let remote = st.add_random_file("bench-delayed.bin", size, 43)?;
                    let mut h = sha2::Sha256::new();
                    let mut f = std::fs::File::open(st.path(&remote))?;
                    std::io::copy(&mut f, &mut h)?;
                    (remote, <[u8; 32]>::from(h.finalize()))
                };
                ctx.remote = remote;
                ctx.size = size;
                ctx.sha256 = sha;
            }
            let proxy = DelayProxy::start(ctx.station.addr(), Duration::from_millis(args.delay_ms)).await?;
            let label = format!("through a delay proxy, RTT +{} ms", 2 * args.delay_ms);
            let rows = round(&ctx, proxy.port(), &label, &args).await?;
            print_rows(&label, ctx.size, &rows);
            proxy.shutdown().await;
        }
        anyhow::Ok(())
    }
    .await;
    drop(ctx);
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}
