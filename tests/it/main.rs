//! Integration tests: one binary, real MariaDB servers, the real daemon binary.

mod backup;
mod cli;
mod crfs;
mod demo;
mod deploy;
mod gateway;
mod http;
mod ops;
mod process;
mod publish;
mod ssh;
mod station;
mod support;
mod zabbix;
