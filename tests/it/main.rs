//! Integration tests: one binary, real MariaDB servers, the real daemon binary.

mod backup;
mod cli;
mod crfs;
mod gateway;
mod process;
mod support;
mod station;
mod ssh;
