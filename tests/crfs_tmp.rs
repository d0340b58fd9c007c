//! TEMPORARY harness (to be deleted): runs tests/it/crfs.rs until tests/it/main.rs has `mod crfs;`.
#[path = "it/crfs.rs"]
mod crfs;
