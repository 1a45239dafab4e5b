//! What people read, rendered from values it is given: the live [`dashboard`] (or its
//! headless lines) started by [`display`], the text [`report`]s, the JSON and HTML
//! [`demo_report`] with its [`plots`] and [`summary`] card, and the [`logsink`] that keeps log lines off the
//! dashboard.

pub mod dashboard;
pub mod demo_report;
pub mod display;
pub mod logsink;
pub mod plots;
pub mod report;
pub mod summary;
