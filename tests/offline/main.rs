//! The fast lane: every test that needs no service (no PostgreSQL, Kafka, Connect or MongoDB),
//! so `cargo test --test offline` answers in seconds on a machine with nothing but Rust.
//! The tests against the real stack are in `tests/stack`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod durations;
mod stack_files;
mod suite;
