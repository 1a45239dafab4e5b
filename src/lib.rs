//! pipedemo: demonstrates and load-tests a change-data-capture pipeline end to end,
//! PostgreSQL `event_outbox` → Debezium → Kafka → consumer → MongoDB read models, with the
//! timing of every event at each stage (T0–T5).
//!
//! Data flows one way: [`generator`] → [`outbox`] (PostgreSQL); Kafka → [`consumer`] →
//! [`handlers`] → [`store`] (MongoDB), with [`metrics`] on a channel to whoever reports.

#![warn(missing_docs)]

pub mod checksum;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod connect;
pub mod consumer;
pub mod dashboard;
pub mod demo_report;
pub mod diagnose;
pub mod envelope;
pub mod full;
pub mod generator;
pub mod handlers;
pub mod health;
pub mod kafka;
pub mod live;
pub mod load;
pub mod logsink;
pub mod metrics;
pub mod outbox;
pub mod plots;
pub mod replay;
pub mod report;
pub mod setup;
pub mod stats;
pub mod store;
pub mod verify;
