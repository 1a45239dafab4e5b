//! pipedemo: demonstrates and load-tests a change-data-capture pipeline end to end,
//! PostgreSQL `event_outbox` → Debezium → Kafka → consumer → MongoDB read models, with the
//! timing of every event at each stage (T0–T5).
//!
//! The folders follow the data, and every import runs down this list:
//! - [`commands`]: one module per subcommand (its flags, what it prints); [`cli`] parses the
//!   command line;
//! - [`show`]: what people read: the dashboard, the text and HTML reports, their plots;
//! - [`run`]: the run engine ([`run::session`], [`run::load`], [`run::capacity`],
//!   [`run::full`], the [`run::health`] poller) and what a run measured ([`run::outcome`]);
//! - [`provision`]: what the pipeline runs on: the Debezium [`provision::connector`],
//!   [`provision::ownership`] marks, [`provision::setup`];
//! - [`check`]: proof that nothing was lost ([`check::verify`], [`check::checksum`]) and the
//!   rules runs are judged by;
//! - [`pipeline`]: the pipeline itself, in flow order: [`pipeline::generator`] →
//!   [`pipeline::outbox`] (PostgreSQL) → [`pipeline::kafka`] → [`pipeline::consumer`] →
//!   [`pipeline::envelope`] → [`pipeline::handlers`] → [`pipeline::store`] (MongoDB);
//! - [`telemetry`]: what the consumer measures, on a channel: [`telemetry::metrics`] →
//!   [`telemetry::live`] and [`telemetry::stats`], with [`telemetry::health`] as data.
//!
//! Shared vocabulary: [`config`] (settings), [`event`] (the event types), [`read_model`] (the
//! collections), [`fault`] (what a chaos run breaks), [`run_id`], [`numbers`], [`exit`] (the exit codes).

#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod event;
pub mod exit;
pub mod fault;
pub mod numbers;
pub mod pipeline;
pub mod provision;
pub mod read_model;
pub mod run;
pub mod run_id;
pub mod show;
pub mod telemetry;
