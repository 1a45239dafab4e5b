//! CPU time of the pipeline's local processes (PostgreSQL, Kafka, Kafka Connect, the
//! MongoDB-protocol server, pipedemo itself), read from `/proc`, so that a capacity step can
//! say where the machine's cores went. Services on other hosts (or in containers this host
//! cannot see into) are simply absent.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// The processes told apart, by what their command line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Every `postgres` process.
    Postgres,
    /// The Kafka broker JVM (`kafka.Kafka`).
    Kafka,
    /// The Kafka Connect JVM (`ConnectDistributed`), where Debezium runs.
    Connect,
    /// `mongod`, or the SecantusDB server the native stack runs.
    Mongo,
    /// This process.
    Pipedemo,
}

impl Service {
    /// Its name in tables.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Kafka => "kafka",
            Service::Connect => "connect",
            Service::Mongo => "mongo",
            Service::Pipedemo => "pipedemo",
        }
    }

    /// Which service a process is, from its name and command line.
    pub fn of(comm: &str, cmdline: &str) -> Option<Service> {
        if comm == "postgres" {
            Some(Service::Postgres)
        } else if cmdline.contains("ConnectDistributed") {
            Some(Service::Connect)
        } else if cmdline.contains("kafka.Kafka") {
            Some(Service::Kafka)
        } else if comm.starts_with("mongod") || comm.starts_with("secantus") {
            Some(Service::Mongo)
        } else {
            None
        }
    }
}

/// CPU ticks used so far by each service, at one moment.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    ticks: BTreeMap<Service, u64>,
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_SEC: f64 = 100.0;

impl CpuSample {
    /// Reads every process's CPU time now.
    pub fn now() -> CpuSample {
        let mut ticks: BTreeMap<Service, u64> = BTreeMap::new();
        for (_, s, used) in processes() {
            *ticks.entry(s).or_default() += used;
        }
        CpuSample {
            at: Instant::now(),
            ticks,
        }
    }

    /// Per service, the percentage of one core used between `earlier` and this sample.
    pub fn since(&self, earlier: &CpuSample) -> BTreeMap<Service, f64> {
        let secs = self.at.duration_since(earlier.at).as_secs_f64();
        if secs <= 0.0 {
            return BTreeMap::new();
        }
        self.ticks
            .iter()
            .map(|(s, t)| {
                let before = earlier.ticks.get(s).copied().unwrap_or(0);
                let used = t.saturating_sub(before) as f64 / TICKS_PER_SEC;
                (*s, used / secs * 100.0)
            })
            .collect()
    }
}

/// Every process of a service now: pid, service and user + system ticks so far. A process
/// that exits takes its ticks with it, so whoever needs the CPU of short-lived processes
/// (PostgreSQL backends) samples this often and adds up each pid's growth.
pub fn processes() -> Vec<(u32, Service, u64)> {
    let mut out = Vec::new();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((comm, used)) = parse_stat(&stat) else {
            continue;
        };
        let service = if pid == me {
            Some(Service::Pipedemo)
        } else {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            Service::of(comm, &cmdline)
        };
        if let Some(s) = service {
            out.push((pid, s, used));
        }
    }
    out
}

/// This process's resident memory, MB (`VmRSS` of `/proc/self/status`).
pub fn own_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The command name and user + system ticks of a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state, ppid, …; utime and stime are fields 14 and 15 of the line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_cpu_ticks() {
        let line =
            "1234 (java (x)) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 40 0 1 2 3";
        assert_eq!(parse_stat(line), Some(("java (x)", 300)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn services_are_told_apart_by_their_command_line() {
        assert_eq!(Service::of("postgres", ""), Some(Service::Postgres));
        assert_eq!(
            Service::of(
                "java",
                "java -cp x org.apache.kafka.connect.cli.ConnectDistributed w.properties"
            ),
            Some(Service::Connect)
        );
        assert_eq!(
            Service::of("java", "java -cp x kafka.Kafka server.properties"),
            Some(Service::Kafka)
        );
        assert_eq!(Service::of("secantusd-rs", ""), Some(Service::Mongo));
        assert_eq!(Service::of("bash", "bash"), None);
    }

    #[test]
    fn this_process_is_found_and_its_use_measured() {
        let a = CpuSample::now();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = CpuSample::now();
        assert!(b.ticks.contains_key(&Service::Pipedemo));
        assert!(b.since(&a)[&Service::Pipedemo] >= 0.0);
        assert!(own_rss_mb().is_some_and(|mb| mb > 1.0));
    }
}
