//! Temporary harness for the publisher tests until `mod publish;` is added to tests/it/main.rs.
#[path = "it/support.rs"]
mod support;
#[path = "it/publish.rs"]
mod publish;
