//! Configuration: built-in defaults < TOML file < `APPCATALOGA_*` environment.
//!
//! Every key, its default and its meaning are documented in `etc/appcataloga.toml`; this module
//! is the single place where defaults live. Loading is two-stage: figment merges the layers into
//! [`Config`] (serde rejects unknown keys and bad types), then [`Config::validate`] checks what
//! serde cannot (identifier syntax, ranges). Errors name the key and both ways to set it, in one
//! line, so an operator can fix a broken start from `journalctl` alone.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the daemon looks for its configuration file when neither `--config` nor
/// `APPCATALOGA_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/appcataloga/appcataloga.toml";

/// Environment variable prefix; `__` separates nesting levels (`APPCATALOGA_DATABASE__URL`).
pub const ENV_PREFIX: &str = "APPCATALOGA_";

/// The whole, validated configuration. Passed explicitly; never read from globals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// MariaDB connection and schema names.
    pub database: DatabaseConfig,
    /// The Zabbix-facing TCP gateway.
    pub gateway: GatewayConfig,
    /// The central file repository.
    pub repository: RepositoryConfig,
    /// Encryption key for station passwords.
    pub secrets: SecretsConfig,
    /// The backup workers.
    pub backup: BackupConfig,
    /// The processing workers.
    pub processing: ProcessingConfig,
    /// The Parquet publisher.
    pub publish: PublishConfig,
    /// The HTTP observability endpoint.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Process lifecycle.
    pub daemon: DaemonConfig,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `mysql://user:password@host:port/` — required; there is no sensible default.
    pub url: Option<DatabaseUrl>,
    /// Name of the queue schema (the original `BPDATA`). Tests use prefixed names for isolation.
    pub bpdata_schema: String,
    /// Name of the catalogue schema (the original `RFDATA`).
    pub rfdata_schema: String,
    /// Connections in the pool shared by every stage.
    pub max_connections: u32,
    /// How long a statement may wait for a pooled connection before it fails. The gateway has
    /// its own, shorter budget for a whole request (`gateway.db_timeout`).
    #[serde(with = "duration_str")]
    pub acquire_timeout: Duration,
    /// Apply pending migrations when the daemon starts.
    pub migrate_on_start: bool,
}

/// `[gateway]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address and port the Zabbix gateway listens on.
    pub listen: SocketAddr,
    /// Client networks allowed to connect; everyone else gets a refusal.
    pub allow: Vec<IpNet>,
    /// Whole-request deadline: a client that has not sent a complete request by then is closed.
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// A legacy request has no terminator: after this long without new bytes, what arrived is
    /// taken as the whole request.
    #[serde(with = "duration_str")]
    pub idle_gap: Duration,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Concurrent connections served; the excess is refused at once.
    pub max_connections: usize,
    /// Budget for the database work of one request; past it the reply is a status-0 error.
    #[serde(with = "duration_str")]
    pub db_timeout: Duration,
}

/// `[repository]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepositoryConfig {
    /// Root of the central repository (`tmp/`, `<YYYY>/…`, `trash/`, `Metadata/` live under it).
    pub root: PathBuf,
}

/// `[secrets]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// File holding the 256-bit key that encrypts station passwords (`appcataloga keygen PATH`).
    pub key_file: PathBuf,
}

/// `[backup]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Run backup workers in this daemon.
    pub enabled: bool,
    /// Stations backed up at the same time (at most one session per station).
    pub max_parallel_hosts: usize,
    /// How often an idle worker looks for queued stations.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
    /// A claimed task's lease; renewed at a third of it while the backup runs.
    #[serde(with = "duration_str")]
    pub lease: Duration,
    /// Host key policy: `accept-new` (pin on first contact), `strict` (must be pinned), or
    /// `known-hosts` (check `known_hosts_file`).
    pub host_key_policy: HostKeyPolicyName,
    /// OpenSSH known_hosts file for the `known-hosts` policy.
    pub known_hosts_file: Option<PathBuf>,
    /// Private key used for hosts without a password or a key file of their own.
    pub default_key_file: Option<PathBuf>,
    /// Station indexer configuration path (per-host override in `HOST.NA_STATION_CONFIG`).
    pub station_config: String,
    /// Deadline for TCP connect + key exchange + authentication.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// A session with no traffic for this long is dropped.
    #[serde(with = "duration_str")]
    pub io_timeout: Duration,
    /// Waits while the station holds its HALT_FLAG: a random pause between these bounds...
    #[serde(with = "duration_str")]
    pub halt_wait_min: Duration,
    /// ...upper bound of the pause...
    #[serde(with = "duration_str")]
    pub halt_wait_max: Duration,
    /// ...repeated at most this many times before a "halt flag alert".
    pub halt_wait_cycles: u32,
    /// Largest `DUE_BACKUP` read, in bytes.
    pub max_index_bytes: u64,
    /// Most lines read from `DUE_BACKUP`.
    pub max_index_lines: usize,
    /// A failed file copy is retried on later backups this many times, then left in error.
    pub copy_retry_limit: u32,
    /// First retry delay after a transient failure (doubles each time, with jitter).
    #[serde(with = "duration_str")]
    pub retry_base: Duration,
    /// Longest retry delay for transient failures.
    #[serde(with = "duration_str")]
    pub retry_max: Duration,
    /// Delay before retrying after a permanent failure (bad password, missing station config).
    #[serde(with = "duration_str")]
    pub permanent_retry: Duration,
}

/// `[processing]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// Run processing workers in this daemon.
    pub enabled: bool,
    /// Files processed at the same time; 0 = number of cores.
    pub parallelism: usize,
    /// How often an idle worker looks for copied files.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
    /// A claimed file's lease; a worker that dies loses it after this long.
    #[serde(with = "duration_str")]
    pub lease: Duration,
    /// A new position within this many degrees (on both axes) of a site belongs to it.
    pub site_tolerance_deg: f64,
    /// A site's position is refined as a running mean up to this many GPS samples.
    pub max_site_samples: u64,
    /// `NA_VOLUME` of repository copies in `DIM_SPECTRUM_FILE` (the original's `repoSFI`).
    pub repository_volume: String,
    /// First retry delay after a passing failure (doubles each time).
    #[serde(with = "duration_str")]
    pub retry_base: Duration,
    /// Optional Nominatim server (`http://host:port`) asked for the district name of a new site.
    pub nominatim_url: Option<String>,
    /// Deadline of one geocoder request; on any failure the site just has no district.
    #[serde(with = "duration_str")]
    pub geocoder_timeout: Duration,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            parallelism: 0,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(600),
            site_tolerance_deg: 0.0005,
            max_site_samples: 1000,
            repository_volume: "repoSFI".into(),
            retry_base: Duration::from_secs(30),
            nominatim_url: None,
            geocoder_timeout: Duration::from_secs(3),
        }
    }
}

/// `[publish]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Run the publisher stage in the daemon.
    pub enabled: bool,
    /// How often the catalogue version is polled.
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// A change is published once the version has been stable this long.
    #[serde(with = "duration_str")]
    pub debounce: Duration,
    /// A catalogue that keeps changing is published anyway this long after the first
    /// unpublished change.
    #[serde(with = "duration_str")]
    pub max_delay: Duration,
    /// `NA_VOLUME` of repository copies in `DIM_SPECTRUM_FILE` (`repoSFI` in the original).
    pub repository_volume: String,
    /// Also write `rf_metadata.<TABLE>.parquet` for every RFDATA table.
    pub table_dumps: bool,
    /// Compression codec.
    pub compression: crate::publish::PublishCompression,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Rows per Arrow batch handed to the writer (memory ≈ 2–3 batches + one row group).
    pub batch_rows: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            enabled: true,
            interval: Duration::from_secs(30),
            debounce: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            repository_volume: "repoSFI".into(),
            table_dumps: true,
            compression: crate::publish::PublishCompression::Zstd,
            row_group_rows: 131_072,
            batch_rows: 8192,
        }
    }
}

/// `[http]`: the observability endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/status`, `/hosts/{id}` and `/metrics`.
    pub enabled: bool,
    /// Address and port; loopback by default (there is no authentication).
    pub listen: SocketAddr,
    /// Connections served at once; the excess gets a 503 and is closed.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { enabled: true, listen: SocketAddr::from(([127, 0, 0, 1], 5556)), max_connections: 64 }
    }
}

/// Host key policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicyName {
    /// Pin on first contact, refuse a different key afterwards.
    AcceptNew,
    /// Refuse hosts whose key was not pinned beforehand.
    Strict,
    /// Check an OpenSSH known_hosts file.
    KnownHosts,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_parallel_hosts: 16,
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(120),
            host_key_policy: HostKeyPolicyName::AcceptNew,
            known_hosts_file: None,
            default_key_file: None,
            station_config: "/etc/node/indexerD.cfg".into(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(300),
            halt_wait_min: Duration::from_secs(150),
            halt_wait_max: Duration::from_secs(300),
            halt_wait_cycles: 6,
            max_index_bytes: 16 << 20,
            max_index_lines: 200_000,
            copy_retry_limit: 5,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            permanent_retry: Duration::from_secs(6 * 3600),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto` (journald under systemd, else text), `text`, `json` or `journald`.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set.
    pub level: String,
}

/// `[daemon]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// How long in-flight work may take to finish after SIGTERM before it is abandoned.
    #[serde(with = "duration_str")]
    pub shutdown_timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald when `JOURNAL_STREAM` is set, readable text on stderr otherwise.
    Auto,
    /// Readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Structured journald entries.
    Journald,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            bpdata_schema: "BPDATA".into(),
            rfdata_schema: "RFDATA".into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5555)),
            allow: vec![
                "127.0.0.0/8".parse().expect("valid literal network"),
                "::1/128".parse().expect("valid literal network"),
            ],
            request_timeout: Duration::from_secs(5),
            idle_gap: Duration::from_millis(250),
            max_request_bytes: 4096,
            max_connections: 2048,
            db_timeout: Duration::from_millis(900),
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self { root: PathBuf::from("/mnt/reposfi") }
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self { key_file: PathBuf::from("/etc/appcataloga/secret.key") }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Auto, level: "info".into() }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self { shutdown_timeout: Duration::from_secs(30) }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::default(),
            gateway: GatewayConfig::default(),
            repository: RepositoryConfig::default(),
            secrets: SecretsConfig::default(),
            backup: BackupConfig::default(),
            processing: ProcessingConfig::default(),
            publish: PublishConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            daemon: DaemonConfig::default(),
        }
    }
}

/// A configuration problem, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key that has no default is not set anywhere.
    #[error(
        "missing required setting `{key}`: set it in {file} (or the file named by --config / APPCATALOGA_CONFIG) or in the environment variable {env}"
    )]
    Missing {
        /// Dotted key name.
        key: String,
        /// Config file in use.
        file: String,
        /// Environment variable that sets it.
        env: String,
    },
    /// A key is set to something unusable.
    #[error(
        "invalid value for `{key}`: {reason}; fix it in {file} (or the file named by --config / APPCATALOGA_CONFIG) or in the environment variable {env}"
    )]
    Invalid {
        /// Dotted key name.
        key: String,
        /// What is wrong with it.
        reason: String,
        /// Config file in use.
        file: String,
        /// Environment variable that sets it.
        env: String,
    },
    /// The config file exists but cannot be read.
    #[error("cannot read configuration file {path}: {reason}")]
    Unreadable {
        /// Path of the file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

/// Environment variable name for a dotted key (`database.url` → `APPCATALOGA_DATABASE__URL`).
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

impl Config {
    /// Loads defaults < `file` (if it exists, or must exist when `required`) < environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad or missing key.
    pub fn load(file: &Path, required: bool) -> Result<Config, ConfigError> {
        let file_label = file.display().to_string();
        if required && !file.exists() {
            return Err(ConfigError::Unreadable { path: file_label, reason: "no such file".into() });
        }
        if file.exists()
            && let Err(e) = std::fs::metadata(file).and_then(|_| std::fs::File::open(file))
        {
            return Err(ConfigError::Unreadable { path: file_label, reason: e.to_string() });
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed(ENV_PREFIX).filter(|k| k.as_str().contains("__")).split("__"));
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() { "(top level)".to_string() } else { key };
            ConfigError::Invalid {
                env: env_var_for(&key),
                reason: e.kind.to_string(),
                key,
                file: file_label.clone(),
            }
        })?;
        config.validate(&file_label)?;
        Ok(config)
    }

    /// Checks what serde cannot.
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.into(),
            reason,
            file: file.into(),
            env: env_var_for(key),
        };
        match &self.database.url {
            None => {
                return Err(ConfigError::Missing {
                    key: "database.url".into(),
                    file: file.into(),
                    env: env_var_for("database.url"),
                });
            }
            Some(url) => {
                let s = url.0.expose_secret();
                if !(s.starts_with("mysql://") || s.starts_with("mariadb://")) {
                    return Err(invalid("database.url", "expected mysql://user:password@host:port/".into()));
                }
            }
        }
        for (key, name) in [
            ("database.bpdata_schema", &self.database.bpdata_schema),
            ("database.rfdata_schema", &self.database.rfdata_schema),
        ] {
            if !is_sql_identifier(name) {
                return Err(invalid(
                    key,
                    format!("{name:?} is not a schema name (letters, digits and _, at most 64)"),
                ));
            }
        }
        if self.database.bpdata_schema.eq_ignore_ascii_case(&self.database.rfdata_schema) {
            return Err(invalid("database.rfdata_schema", "must differ from database.bpdata_schema".into()));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1".into()));
        }
        if self.gateway.max_connections == 0 {
            return Err(invalid("gateway.max_connections", "must be at least 1".into()));
        }
        if !(64..=65536).contains(&self.gateway.max_request_bytes) {
            return Err(invalid("gateway.max_request_bytes", "must be between 64 and 65536".into()));
        }
        if self.gateway.request_timeout.is_zero() {
            return Err(invalid("gateway.request_timeout", "must be positive".into()));
        }
        if self.backup.max_parallel_hosts == 0 {
            return Err(invalid("backup.max_parallel_hosts", "must be at least 1".into()));
        }
        if self.backup.lease < Duration::from_secs(3) {
            return Err(invalid("backup.lease", "must be at least 3s".into()));
        }
        if self.backup.halt_wait_min > self.backup.halt_wait_max {
            return Err(invalid("backup.halt_wait_min", "must not exceed backup.halt_wait_max".into()));
        }
        if self.backup.host_key_policy == HostKeyPolicyName::KnownHosts
            && self.backup.known_hosts_file.is_none()
        {
            return Err(invalid(
                "backup.known_hosts_file",
                "required by host_key_policy = \"known-hosts\"".into(),
            ));
        }
        if !(self.processing.site_tolerance_deg > 0.0 && self.processing.site_tolerance_deg < 1.0) {
            return Err(invalid("processing.site_tolerance_deg", "must be between 0 and 1 degree".into()));
        }
        if let Some(url) = &self.processing.nominatim_url
            && !url.starts_with("http://")
        {
            return Err(invalid(
                "processing.nominatim_url",
                format!("{url:?}: only http:// URLs are supported"),
            ));
        }
        if self.processing.lease < Duration::from_secs(10) {
            return Err(invalid("processing.lease", "must be at least 10s".into()));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1".into()));
        }
        if self.gateway.allow.is_empty() {
            return Err(invalid(
                "gateway.allow",
                "empty: no client could ever connect (use [\"0.0.0.0/0\", \"::/0\"] to allow all)".into(),
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML with secrets redacted (`appcataloga config check`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `true` for a plain, unquoted SQL identifier: `[A-Za-z0-9_]{1,64}`.
pub fn is_sql_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A database URL. Its password never appears in `Debug`, `Display` or serialized output.
#[derive(Clone)]
pub struct DatabaseUrl(pub SecretString);

impl DatabaseUrl {
    /// The URL with the password replaced by `*****`.
    pub fn redacted(&self) -> String {
        redact_url_password(self.0.expose_secret())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(DatabaseUrl(SecretString::from(String::deserialize(d)?)))
    }
}

/// Replaces the password part of `scheme://user:password@host/...` with `*****`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{}{}:*****{}", &url[..scheme_end + 3], &authority[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

/// Durations written as `500ms`, `5s`, `10m`, `2h` (a bare number means seconds).
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Renders the shortest exact form.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Accepts a string with a unit or a plain integer of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Duration::from_secs(n)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `500ms`, `5s`, `1.5s`, `10m`, `2h`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 =
            num.parse().map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 5s, 10m, 2h)"))?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
        };
        let secs = value * scale;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Shortest exact rendering.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(redact_url_password("mysql://u:secret@h:3306/db"), "mysql://u:*****@h:3306/db");
        assert_eq!(redact_url_password("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact_url_password("mysql://u:p:q@h/"), "mysql://u:*****@h/");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_str::parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration_str::parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration_str::parse("2m").unwrap(), Duration::from_secs(120));
        assert!(duration_str::parse("5 parsecs").is_err());
        assert_eq!(duration_str::format(Duration::from_millis(250)), "250ms");
        assert_eq!(duration_str::format(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_for("database.url"), "APPCATALOGA_DATABASE__URL");
        assert_eq!(env_var_for("gateway.listen"), "APPCATALOGA_GATEWAY__LISTEN");
    }

    #[test]
    fn identifiers() {
        assert!(is_sql_identifier("BPDATA"));
        assert!(is_sql_identifier("t12_BPDATA"));
        assert!(!is_sql_identifier("BP`DATA"));
        assert!(!is_sql_identifier(""));
    }
}
