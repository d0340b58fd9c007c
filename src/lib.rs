//! appcataloga: the central-server daemon of a radio-spectrum monitoring network.
//!
//! Zabbix asks it over TCP to back a station up ([`gateway`]); the request is queued in MariaDB
//! ([`store`], the only module with SQL); bounded SSH/SFTP workers copy the station's new files
//! under its `HALT_FLAG` ([`backup`]); the CRFS `.bin` files are read by a pure parser
//! ([`crfs`]) and catalogued ([`process`]); the catalogue is published as Parquet
//! ([`publish`]); [`http`] serves status and metrics. [`daemon`] wires the stages together;
//! [`config`], [`telemetry`], [`signal`], [`cli`] and [`ops`] are the thin outer layer;
//! [`station`] simulates stations for tests, benchmarks and the [`demo`]. See ARCHITECTURE.md
//! for the map and the invariants.

pub mod backup;
pub mod bench_crfs;
pub mod bench_gateway;
pub mod bench_pipeline;
pub mod bench_publish;
pub mod bench_sftp;
pub mod cli;
pub mod config;
pub mod crfs;
pub mod daemon;
pub mod demo;
pub mod gateway;
pub mod http;
pub mod instance;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod process;
pub mod publish;
pub mod refdata;
pub mod secret;
pub mod signal;
pub mod station;
pub mod store;
pub mod telemetry;
