//! The run engine, below what shows it: a [`session`] (consumer, metrics collector, [`health`]
//! poller) into which phases of generated events are inserted; one-phase [`load`]s, the
//! [`capacity`] sweep and the [`full`] show built on it; and their results as values
//! ([`outcome`]) for `show` to render.

pub mod capacity;
pub mod chaos;
pub mod children;
pub mod full;
pub mod health;
pub mod load;
pub mod members;
pub mod outcome;
pub mod session;
