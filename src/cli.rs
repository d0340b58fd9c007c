//! Command line: parsing and the implementation of each subcommand (the binary edge).
//!
//! `main.rs` only calls [`main`]. Errors are printed as one line, `error: <what failed>: <why>`,
//! with exit status 78 (`EX_CONFIG`) for configuration problems and 1 for everything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, LogFormat};
use crate::secret::StationKey;
use crate::store::Store;

/// Backs up and catalogues measurement files from remote radio-monitoring stations.
#[derive(Debug, Parser)]
#[command(name = "appcataloga", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default /etc/appcataloga/appcataloga.toml).
    #[arg(long, global = true, env = "APPCATALOGA_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format; overrides log.format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the daemon (gateway and workers) until SIGTERM.
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Reference data.
    Refdata {
        /// Action.
        #[command(subcommand)]
        action: RefdataCommand,
    },
    /// Configuration.
    Config {
        /// Action.
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Stations.
    Hosts {
        /// Action.
        #[command(subcommand)]
        action: HostsCommand,
    },
    /// Queue, throughput, hosts by condition, errors.
    Status {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Tasks.
    Tasks {
        /// Action.
        #[command(subcommand)]
        action: TasksCommand,
    },
    /// Catalogue already processed files again (e.g. after a parser upgrade); idempotent.
    Reprocess {
        /// Only this host.
        #[arg(long)]
        host: Option<i32>,
        /// Only this file task.
        #[arg(long)]
        task: Option<i64>,
    },
    /// Create a new key for station passwords (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        path: PathBuf,
    },
    /// Write the catalogue as Parquet now (`<repo>/Metadata/`), atomically.
    Publish,
    /// Print the metadata of CRFS `.bin` files.
    Inspect {
        /// Files to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON object per file (one per line).
        #[arg(long)]
        json: bool,
        /// Also decode the levels (slower; shows level statistics).
        #[arg(long)]
        levels: bool,
    },
    /// The whole pipeline on three simulated stations, end to end (see scripts/demo.sh).
    Demo(crate::demo::DemoArgs),
    /// Benchmarks (print figures; not tests).
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// `refdata` actions.
#[derive(Debug, Subcommand)]
pub enum RefdataCommand {
    /// Load IBGE states, municipalities and seat coordinates from DIR (idempotent).
    Load {
        /// Directory holding the reference CSV files.
        dir: PathBuf,
    },
}

/// `hosts` actions.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Every station with its condition and counters.
    List {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One station in detail.
    Show {
        /// Zabbix host id.
        host_id: i32,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set a station's access data; the password is read from stdin (never from the command line).
    SetCredentials {
        /// Zabbix host id.
        host_id: i32,
        /// Equipment name.
        #[arg(long)]
        uid: Option<String>,
        /// Address.
        #[arg(long)]
        address: Option<String>,
        /// SSH port.
        #[arg(long)]
        port: Option<u16>,
        /// SSH user.
        #[arg(long)]
        user: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import the original's node list CSV: id,uid,address,user,password[,port].
    Import {
        /// CSV file.
        csv: PathBuf,
    },
    /// Forget a station's pinned host key (after checking the new one on the station) and
    /// unfreeze its backup; the next contact pins the key it presents.
    TrustKey {
        /// Zabbix host id.
        host_id: i32,
    },
}

/// `tasks` actions.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Tasks, optionally only those in one status.
    List {
        /// error, pending, running, done, stopped, frozen (or the code).
        #[arg(long)]
        status: Option<String>,
        /// Only this host.
        #[arg(long)]
        host: Option<i32>,
        /// At most this many rows per kind.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Put failed tasks back in the queue (backoff and failure count cleared).
    Retry {
        /// Only this host.
        #[arg(long)]
        host: Option<i32>,
        /// Only this file task.
        #[arg(long)]
        task: Option<i64>,
    },
    /// Put every failed, stopped or frozen task back in the queue.
    ResetErrors {
        /// Only this host.
        #[arg(long)]
        host: Option<i32>,
    },
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate and print the effective configuration, secrets redacted.
    Check,
}

/// `bench` targets.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Drive a running gateway with concurrent legacy clients.
    Gateway(crate::bench_gateway::GatewayBenchArgs),
    /// CRFS metadata extraction speed (and rfpye's, when available).
    Crfs(crate::bench_crfs::CrfsBenchArgs),
    /// Backup then processing of many simulated stations, end to end (needs root, MariaDB).
    Pipeline(crate::bench_pipeline::PipelineBenchArgs),
    /// Parquet publication of a large synthetic catalogue.
    Publish(crate::bench_publish::PublishBenchArgs),
    /// SFTP download of a large file: ours vs OpenSSH sftp/scp, loopback and 50 ms round trip.
    Sftp(crate::bench_sftp::SftpBenchArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(cfg) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {cfg}");
                ExitCode::from(78)
            } else {
                eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
                ExitCode::FAILURE
            }
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    match &cli.config {
        Some(path) => Config::load(path, true),
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Runs `f` with a connected store (configuration from the usual layers), then closes it.
fn with_store<F, Fut>(cli: &Cli, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = load_config(cli)?;
    runtime()?.block_on(async {
        let store = Store::connect_lazy(&config.database)?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

/// `appcataloga inspect`: every file is reported; the exit status is non-zero if any failed.
fn inspect(files: &[PathBuf], json: bool, levels: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for path in files {
        let result =
            std::fs::read(path).with_context(|| format!("reading {}", path.display())).and_then(|bytes| {
                crate::crfs::parse(&bytes, crate::crfs::ParseOptions { decode_levels: levels })
                    .with_context(|| format!("{}", path.display()))
            });
        match result {
            Ok(meta) if json => {
                writeln!(out, "{}", crate::crfs::inspect::render_json(&meta, Some(path)))?;
            }
            Ok(meta) => writeln!(out, "{}", crate::crfs::inspect::render_text(&meta, Some(path)))?,
            Err(e) => {
                failed += 1;
                if json {
                    let v =
                        serde_json::json!({"file": path.display().to_string(), "error": format!("{e:#}")});
                    writeln!(out, "{v}")?;
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} files could not be read as CRFS", files.len());
    Ok(())
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Commands::Keygen { path } => {
            let id = StationKey::generate_file(path)?;
            println!("wrote a new station-password key to {} (key id {id})", path.display());
            println!(
                "set secrets.key_file = {:?} (or APPCATALOGA_SECRETS__KEY_FILE)",
                path.display().to_string()
            );
            Ok(())
        }
        Commands::Bench { which: BenchCommand::Gateway(args) } => {
            runtime()?.block_on(crate::bench_gateway::run(args.clone()))
        }
        Commands::Bench { which: BenchCommand::Crfs(args) } => crate::bench_crfs::run(args),
        Commands::Bench { which: BenchCommand::Pipeline(args) } => {
            runtime()?.block_on(crate::bench_pipeline::run(args.clone()))
        }
        Commands::Inspect { files, json, levels } => inspect(files, *json, *levels),
        Commands::Bench { which: BenchCommand::Sftp(args) } => {
            runtime()?.block_on(crate::bench_sftp::run(args.clone()))
        }
        Commands::Demo(args) => runtime()?.block_on(crate::demo::run(args.clone())),
        Commands::Bench { which: BenchCommand::Publish(args) } => {
            runtime()?.block_on(crate::bench_publish::run(args.clone()))
        }
        Commands::Publish => {
            let config = load_config(&cli)?;
            crate::telemetry::init(cli.log_format.unwrap_or(config.log.format), &config.log.level);
            runtime()?.block_on(async {
                let store = Store::connect_lazy(&config.database)?;
                let mut opts = crate::publish::PublishOptions::from(&config.publish);
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    opts.progress = Some(std::sync::Arc::new(|p: &crate::publish::PublishProgress| {
                        eprint!("\r{}: {} rows   ", p.file, p.rows);
                    }));
                }
                let report = crate::publish::publish_once(&store, &config.repository.root, &opts)
                    .await
                    .context("publishing the catalogue")?;
                println!(
                    "published {} ({} rows, {} bytes) and {} table files in {:.1} s",
                    report.catalog.path.display(),
                    report.catalog.rows,
                    report.catalog.bytes,
                    report.tables.len(),
                    report.elapsed.as_secs_f64()
                );
                store.close().await;
                Ok(())
            })
        }
        Commands::Config { action: ConfigCommand::Check } => {
            let config = load_config(&cli)?;
            print!("{}", config.to_redacted_toml());
            match StationKey::load(&config.secrets.key_file) {
                Ok(k) => eprintln!(
                    "ok: station-password key {} loaded (id {})",
                    config.secrets.key_file.display(),
                    k.id()
                ),
                Err(e) => eprintln!("warning: {e}"),
            }
            Ok(())
        }
        Commands::Run => {
            let config = load_config(&cli)?;
            crate::telemetry::init(cli.log_format.unwrap_or(config.log.format), &config.log.level);
            let rt = runtime()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.gateway.listen)
                    .await
                    .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
                let shutdown = crate::signal::shutdown_signal().context("installing signal handlers")?;
                crate::daemon::run(config, listener, shutdown).await
            })?;
            // Do not wait for lingering blocking tasks (e.g. stdin readers) at exit.
            rt.shutdown_timeout(Duration::from_secs(1));
            Ok(())
        }
        Commands::Status { json } => {
            with_store(&cli, |store| async move { crate::ops::status(&store, *json).await })
        }
        Commands::Hosts { action: HostsCommand::List { json } } => {
            with_store(&cli, |store| async move { crate::ops::hosts(&store, None, *json).await })
        }
        Commands::Hosts { action: HostsCommand::Show { host_id, json } } => {
            with_store(&cli, |store| async move { crate::ops::hosts(&store, Some(*host_id), *json).await })
        }
        Commands::Hosts {
            action: HostsCommand::SetCredentials { host_id, uid, address, port, user, password_stdin },
        } => {
            let config = load_config(&cli)?;
            let key = StationKey::load(&config.secrets.key_file).ok();
            let password = if *password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
                Some(secrecy::SecretString::from(line.trim_end_matches(['\r', '\n']).to_string()))
            } else {
                None
            };
            with_store(&cli, |store| async move {
                crate::ops::set_credentials(
                    &store,
                    key.as_ref(),
                    *host_id,
                    uid.as_deref(),
                    address.as_deref(),
                    *port,
                    user.as_deref(),
                    password,
                )
                .await
            })
        }
        Commands::Hosts { action: HostsCommand::Import { csv } } => {
            let config = load_config(&cli)?;
            let key = StationKey::load(&config.secrets.key_file).ok();
            with_store(&cli, |store| async move {
                crate::ops::import_hosts(&store, key.as_ref(), csv).await.map(|_| ())
            })
        }
        Commands::Tasks { action: TasksCommand::List { status, host, limit, json } } => {
            let status = status.as_deref().map(crate::ops::parse_status).transpose()?;
            let filter = crate::store::ops::TaskFilter { host_id: *host, task_id: None };
            with_store(&cli, |store| async move {
                crate::ops::list_tasks(&store, status, filter, *limit, *json).await
            })
        }
        Commands::Tasks { action: TasksCommand::Retry { host, task } } => {
            let filter = crate::store::ops::TaskFilter { host_id: *host, task_id: *task };
            with_store(&cli, |store| async move {
                let actor = format!("operator {}", crate::instance::InstanceId::current());
                let (h, f) =
                    store.requeue_tasks(&[-1], filter, None, &actor, "Retried by an operator").await?;
                println!("requeued {h} host tasks and {f} file tasks");
                Ok(())
            })
        }
        Commands::Tasks { action: TasksCommand::ResetErrors { host } } => {
            let filter = crate::store::ops::TaskFilter { host_id: *host, task_id: None };
            with_store(&cli, |store| async move {
                let actor = format!("operator {}", crate::instance::InstanceId::current());
                let (h, f) = store
                    .requeue_tasks(&[-1, -2, -3], filter, None, &actor, "Errors reset by an operator")
                    .await?;
                println!("requeued {h} host tasks and {f} file tasks");
                Ok(())
            })
        }
        Commands::Reprocess { host, task } => {
            let filter = crate::store::ops::TaskFilter { host_id: *host, task_id: *task };
            with_store(&cli, |store| async move {
                let actor = format!("operator {}", crate::instance::InstanceId::current());
                let (_, f) = store
                    .requeue_tasks(&[0], filter, Some(2), &actor, "Reprocessing requested by an operator")
                    .await?;
                println!("{f} files queued for processing again");
                Ok(())
            })
        }
        Commands::Hosts { action: HostsCommand::TrustKey { host_id } } => {
            let config = load_config(&cli)?;
            runtime()?.block_on(async {
                let store = Store::connect_lazy(&config.database)?;
                let actor = format!("operator {}", crate::instance::InstanceId::current());
                let found =
                    store.trust_host_key(*host_id, &actor).await.context("re-trusting the host key")?;
                store.close().await;
                anyhow::ensure!(found, "host {host_id} is unknown");
                println!(
                    "host {host_id}: pinned key forgotten; the next backup pins the key the station presents"
                );
                Ok(())
            })
        }
        Commands::Migrate => {
            let config = load_config(&cli)?;
            crate::telemetry::init(cli.log_format.unwrap_or(config.log.format), &config.log.level);
            runtime()?.block_on(async {
                let store = Store::connect_lazy(&config.database)?;
                let report = store
                    .migrate(&crate::instance::InstanceId::current().to_string())
                    .await
                    .context("applying migrations")?;
                println!(
                    "migrations: {} applied ({:?}), {} already present",
                    report.applied.len(),
                    report.applied,
                    report.already.len()
                );
                store.close().await;
                Ok(())
            })
        }
        Commands::Refdata { action: RefdataCommand::Load { dir } } => {
            let config = load_config(&cli)?;
            crate::telemetry::init(cli.log_format.unwrap_or(config.log.format), &config.log.level);
            let data = crate::refdata::load_dir(dir)?;
            runtime()?.block_on(async {
                let store = Store::connect_lazy(&config.database)?;
                store.migrate(&crate::instance::InstanceId::current().to_string()).await.context("applying migrations")?;
                let total = data.counties.len();
                let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let report = store
                    .load_reference_data(&data, |done| {
                        if tty {
                            eprint!("\rmunicipalities: {done}/{total}");
                        }
                    })
                    .await
                    .context("loading reference data")?;
                if tty {
                    eprintln!();
                }
                println!(
                    "reference data from {}: {} states, {} municipalities ({} with seat coordinates); {} inserted, {} updated, {} unchanged",
                    dir.display(),
                    data.states.len(),
                    total,
                    data.counties.iter().filter(|c| c.latitude.is_some()).count(),
                    report.inserted,
                    report.updated,
                    report.unchanged
                );
                store.close().await;
                Ok(())
            })
        }
    }
}
