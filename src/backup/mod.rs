//! The backup stage: pull each queued station's new files over SSH/SFTP into the repository.
//!
//! `index` parses what the station says (untrusted), `commit` publishes copies on the
//! repository side without ever overwriting, `ssh` is the only code that speaks SSH, and
//! `engine` runs the bounded worker pool and the per-host protocol (claim, HALT_FLAG, index,
//! copies, BACKUP_DONE, release).

pub mod commit;
pub mod engine;
pub mod index;
pub mod ssh;
