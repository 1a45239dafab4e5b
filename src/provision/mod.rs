//! Preparing and clearing what the pipeline runs on, apart from the data path: the Debezium
//! [`connector`] registered over Kafka Connect's REST API, the [`ownership`] marks that tell
//! pipedemo's things from everyone else's, [`setup`], which checks every service and
//! prepares the table, connector, topics, indexes and consumer group, and [`ready`], which
//! asks whether that setup was run before a command needs it.

pub mod connector;
pub mod ownership;
pub mod ready;
pub mod setup;
