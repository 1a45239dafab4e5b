//! pipedemo: demonstrates and load-tests a change-data-capture pipeline end to end,
//! PostgreSQL `event_outbox` → Debezium → Kafka → consumer → MongoDB read models, with the
//! timing of every event at each stage (T0–T5).
//!
//! The folders follow the data:
//! - [`pipeline`]: the pipeline itself, in flow order: [`pipeline::generator`] →
//!   [`pipeline::outbox`] (PostgreSQL) → [`pipeline::connect`] (Debezium) → [`pipeline::kafka`]
//!   → [`pipeline::consumer`] → [`pipeline::envelope`] → [`pipeline::handlers`] →
//!   [`pipeline::store`] (MongoDB);
//! - [`telemetry`]: what the consumer measures, on a channel: [`telemetry::metrics`] →
//!   [`telemetry::live`] and [`telemetry::stats`], plus the [`show::health`] poller;
//! - [`show`]: what people read: the dashboard, the text and HTML reports, their plots;
//! - [`check`]: proof that nothing was lost: [`check::verify`], [`check::checksum`];
//! - [`commands`]: one module per subcommand, wiring the above; [`cli`] parses the command line.
//!
//! Shared vocabulary: [`config`] (settings), [`event`] (the event types) and [`read_model`]
//! (the collections).

#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod event;
pub mod exit;
pub mod numbers;
pub mod pipeline;
pub mod provision;
pub mod read_model;
pub mod run;
pub mod run_id;
pub mod show;
pub mod telemetry;
