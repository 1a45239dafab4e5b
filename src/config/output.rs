//! Output settings: the metrics file, logging, the Prometheus endpoint, colour.

use std::path::PathBuf;

use clap::Args;

/// Where pipedemo writes what it measures and logs, and how.
#[derive(Args, Clone, Debug)]
pub struct OutputArgs {
    /// Append one JSON line per processed event to this file.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "METRICS_FILE",
        default_value = "pipedemo_metrics.jsonl"
    )]
    pub metrics_file: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Logs as JSON lines.
    #[arg(global = true, help_heading = "Output", long, env = "LOG_JSON")]
    pub log_json: bool,
    /// Serve the live figures as OpenMetrics at http://ADDR/metrics for Prometheus (load,
    /// full, capacity, chaos, consume, monitor): `HOST:PORT` (`127.0.0.1:9464`,
    /// `localhost:9464`, `[::1]:9464`), `:PORT` for this machine only (loopback), or
    /// `0.0.0.0:PORT` for every interface (the figures are then anyone's who reaches it).
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "METRICS_LISTEN",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Colour in log lines: `auto` only on a terminal and without `NO_COLOR` set.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        value_enum,
        default_value_t = Color::Auto
    )]
    pub color: Color,
}

/// `--color`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set (https://no-color.org).
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

impl Color {
    /// Whether to write colour codes to a stream that is (or is not) a terminal, with
    /// `NO_COLOR` set to `no_color` (an empty value counts as unset, as the convention says).
    pub fn enabled(self, is_terminal: bool, no_color: Option<&str>) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => is_terminal && no_color.is_none_or(str::is_empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_where_wanted() {
        assert!(Color::Auto.enabled(true, None));
        assert!(Color::Auto.enabled(true, Some("")));
        assert!(!Color::Auto.enabled(true, Some("1")));
        assert!(!Color::Auto.enabled(false, None));
        assert!(Color::Always.enabled(false, Some("1")));
        assert!(!Color::Never.enabled(true, None));
    }
}

/// `--metrics-listen`: `HOST:PORT` with a name or an address, or `:PORT` for every interface
/// (as Prometheus's own exporters write it).
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let shape = || format!("`{s}` is not HOST:PORT or :PORT (e.g. 127.0.0.1:9464 or :9464)");
    let (host, port) = s.rsplit_once(':').ok_or_else(shape)?;
    let port: u16 = port.parse().map_err(|_| shape())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        // Every interface only when asked for by name: a bare port stays on this machine.
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("`{s}`: cannot resolve {host} ({e})"))?
        .next()
        .ok_or_else(|| format!("`{s}`: {host} has no address"))
}

#[cfg(test)]
mod listen_tests {
    use super::*;

    #[test]
    fn metrics_listen_takes_names_and_a_bare_port() {
        let p = |s| parse_listen(s).map(|a| a.to_string());
        assert_eq!(p("127.0.0.1:9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(p(":9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(p("0.0.0.0:9464").unwrap(), "0.0.0.0:9464");
        assert_eq!(p("[::1]:9464").unwrap(), "[::1]:9464");
        let local = parse_listen("localhost:9464").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9464, "{local}");
        for bad in ["9464", "localhost", ":http", "host:70000"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
