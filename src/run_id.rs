//! This process's run id, written into every file pipedemo writes (reports, the log) and
//! recorded beside its path, so that `cleanup` removes a file only when the file itself
//! proves pipedemo wrote it: a row in a database table is not proof enough.

use std::sync::OnceLock;

/// The id of this run: a random UUID, the same for every file this process writes.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// This machine's host name (what file records are keyed by).
pub fn machine_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The host this process reports its figures as: `PIPEDEMO_HOST` when set (a pod's or a
/// container's name, or a simulated host), else the machine's.
pub fn reported_host() -> String {
    std::env::var("PIPEDEMO_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .map(|h| h.chars().take(64).collect())
        .unwrap_or_else(machine_host)
}

/// The first line pipedemo writes into its log file.
pub fn log_header() -> String {
    format!("pipedemo log, run {}\n", run_id())
}

/// How a log file pipedemo wrote starts.
pub const LOG_HEADER_PREFIX: &str = "pipedemo log, run ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_process() {
        assert_eq!(run_id(), run_id());
        assert_eq!(run_id().len(), 36);
        assert!(log_header().starts_with(LOG_HEADER_PREFIX));
    }
}
