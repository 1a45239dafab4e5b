//! MongoDB settings: the connection string and the read-model database.

use clap::Args;

use super::secrets::{redact_uri, Secret};

/// The MongoDB-protocol server with the read models.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "MongoDB")]
pub struct MongoArgs {
    /// MongoDB connection string (credentials in it are never printed).
    #[arg(
        global = true,
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongodb_uri: Secret,
    /// Database holding the read models.
    #[arg(
        global = true,
        long,
        env = "MONGODB_DATABASE",
        default_value = "activity_read"
    )]
    pub mongodb_database: String,
}

impl MongoArgs {
    /// The URI with any password replaced, for messages.
    pub fn describe(&self) -> String {
        redact_uri(self.mongodb_uri.expose())
    }
}
