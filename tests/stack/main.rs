//! Tests against the real stack (`scripts/stack.sh up` or docker compose): each test in a world
//! of its own (see `world`), so that they run at the same time; the few that stop a service
//! run on a private stack of their own. The tests that need no service are in `tests/offline`.

#[path = "../common/mod.rs"]
mod shared;
mod world;

/// The shared helpers, with [`world`]'s `pipedemo`, `settings` and `stack_sh` in place of the
/// plain ones.
mod common {
    pub use crate::shared::*;
    pub use crate::world::{
        pipedemo, settings, shared_stack, stack_sh, wait_for_outbox_rows, PrivateStack,
    };
}

mod bad_config;
mod bad_input;
mod capacity;
mod chaos;
mod cli;
mod event_router;
#[cfg(feature = "failpoints")]
mod faults;
mod hosts;
mod ownership;
mod pipeline;
mod prometheus;
mod scale_out;
mod secured;
mod show;
mod soak;
mod stack_smoke;
