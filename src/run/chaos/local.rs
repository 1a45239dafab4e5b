//! The local stack a chaos run may break: `scripts/stack.sh` (or `--stack`), and which of the
//! services pipedemo is pointed at are provably that stack's (same loopback port as the
//! script's `env`, running according to its `status`). Nothing else is stopped or killed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Settings;
use crate::fault::Service;

/// The local stack's script and, per service, whether a fault may act on it (or why not).
#[derive(Clone, Debug, Default)]
pub struct LocalStack {
    /// The script, when found.
    pub script: Option<PathBuf>,
    /// Per service: `Ok` when it is the stack's, else the reason it is not.
    pub services: BTreeMap<Service, Result<(), String>>,
}

impl LocalStack {
    /// Why faults on `service` cannot run, or `None` when they can.
    pub fn refusal(&self, service: Service) -> Option<String> {
        match self.services.get(&service) {
            Some(Ok(())) => None,
            Some(Err(why)) => Some(why.clone()),
            None => Some("no local stack (scripts/stack.sh) was found".into()),
        }
    }

    /// Runs `scripts/stack.sh VERB SERVICE`.
    pub async fn run(&self, verb: &str, service: Service) -> Result<()> {
        let script = self.script.as_ref().context("no local stack")?;
        let mut cmd = tokio::process::Command::new(script);
        // Its own process group: a Ctrl-C at the terminal must not cut a start or stop in
        // half (pipedemo finishes the one in hand, then clears the fault).
        cmd.process_group(0);
        let out = cmd
            .args([verb, service.stack_name()])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", script.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "`{} {verb} {}` failed: {last}",
                script.display(),
                service.stack_name()
            );
        }
        Ok(())
    }
}

/// Finds the stack script (`explicit`, else `scripts/stack.sh` in the working directory) and
/// asks it where its services are and which run.
pub async fn probe(explicit: Option<&Path>, s: &Settings) -> LocalStack {
    let script = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("scripts/stack.sh"));
    let none = |why: String| LocalStack {
        script: None,
        services: [
            Service::Postgres,
            Service::Kafka,
            Service::Connect,
            Service::Mongo,
        ]
        .into_iter()
        .map(|sv| (sv, Err(why.clone())))
        .collect(),
    };
    if !script.is_file() {
        return none(format!(
            "no local stack: {} not found (run from the repository, or pass --stack)",
            script.display()
        ));
    }
    let ask = |arg: &'static str| {
        let script = script.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                tokio::process::Command::new(&script)
                    .arg(arg)
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        }
    };
    let (Some(env), Some(status)) = (ask("env").await, ask("status").await) else {
        return none(format!("{} env/status did not answer", script.display()));
    };
    LocalStack {
        services: matching(&parse_env(&env), &parse_status(&status), s),
        script: Some(script),
    }
}

/// `NAME=value` lines (quotes around a value removed).
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
        .collect()
}

/// `SERVICE PORT STATE …` lines: the services whose state is `up`.
pub fn parse_status(text: &str) -> HashMap<String, bool> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.nth(1)? == "up"))
        })
        .collect()
}

fn loopback(host: &str) -> bool {
    matches!(
        host.trim_matches(['[', ']']),
        "127.0.0.1" | "localhost" | "::1"
    )
}

/// `host:port` pairs of a URL or a comma-separated list (`mongodb://u:p@h:1,h:2/db?…`).
fn endpoints(url: &str) -> Vec<(String, Option<u16>)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    // The user information ends at the last `@` before the query (a password may hold `/`).
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hosts = rest.split('/').next().unwrap_or("");
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match h.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (host.to_owned(), port.parse().ok()),
            _ => (h.to_owned(), None),
        })
        .collect()
}

/// Whether each service pipedemo is pointed at is the local stack's: on loopback, at the port
/// the stack's `env` gives, and `up` in its `status`.
pub fn matching(
    env: &HashMap<String, String>,
    status: &HashMap<String, bool>,
    s: &Settings,
) -> BTreeMap<Service, Result<(), String>> {
    let stack_port = |var: &str| {
        env.get(var)
            .and_then(|v| endpoints(v).first().and_then(|(_, p)| *p))
    };
    let theirs = [
        (
            Service::Postgres,
            vec![(s.pg.host.clone(), Some(s.pg.port))],
            env.get("POSTGRES_PORT").and_then(|p| p.parse().ok()),
        ),
        (
            Service::Kafka,
            endpoints(&s.kafka.bootstrap_servers),
            stack_port("KAFKA_BOOTSTRAP_SERVERS"),
        ),
        (
            Service::Connect,
            endpoints(&s.connect.connect_url),
            stack_port("CONNECT_URL"),
        ),
        (
            Service::Mongo,
            endpoints(s.mongo.mongodb_uri.expose()),
            stack_port("MONGODB_URI"),
        ),
    ];
    theirs
        .into_iter()
        .map(|(service, at, stack)| {
            let verdict = match stack {
                None => Err(format!(
                    "the local stack does not say where its {} is",
                    service.title()
                )),
                Some(port) if !at.iter().all(|(h, p)| loopback(h) && *p == Some(port)) => {
                    Err(format!(
                        "{} is not the local stack's (expected 127.0.0.1:{port})",
                        service.title()
                    ))
                }
                Some(_) if status.get(service.stack_name()) != Some(&true) => Err(format!(
                    "{} is not running under scripts/stack.sh",
                    service.title()
                )),
                Some(_) => Ok(()),
            };
            (service, verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_settings as settings;

    const ENV: &str = "POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT=5432\n\
        KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092\nCONNECT_URL=http://127.0.0.1:8083\n\
        MONGODB_URI=mongodb://127.0.0.1:27017\nSTACK_DIR=/x/.stack\n";
    const STATUS: &str = "SERVICE   PORT   STATE PID      RSS_MB\n\
        postgres  5432   up    10       30\nkafka     9092   up    11       400\n\
        connect   8083   up    12       500\nmongo     27017  down  -        -\n";

    #[test]
    fn only_services_at_the_stacks_ports_and_running_under_it_are_the_stacks() {
        let s = settings(&[
            "--pg-host",
            "localhost",
            "--bootstrap-servers",
            "127.0.0.1:9092",
            "--connect-url",
            "http://db.example.com:8083",
            "--mongodb-uri",
            "mongodb://u:p@127.0.0.1:27017/?authSource=admin",
        ]);
        let m = matching(&parse_env(ENV), &parse_status(STATUS), &s);
        assert_eq!(m[&Service::Postgres], Ok(()));
        assert_eq!(m[&Service::Kafka], Ok(()));
        assert_eq!(
            m[&Service::Connect],
            Err("Kafka Connect is not the local stack's (expected 127.0.0.1:8083)".into())
        );
        assert_eq!(
            m[&Service::Mongo],
            Err("MongoDB is not running under scripts/stack.sh".into())
        );
        // A cluster with one broker elsewhere is not the stack's.
        let s = settings(&["--bootstrap-servers", "127.0.0.1:9092,10.0.0.7:9092"]);
        assert!(matching(&parse_env(ENV), &parse_status(STATUS), &s)[&Service::Kafka].is_err());
        // Another port on loopback (a second stack, a tunnel) is not either.
        let s = settings(&["--pg-port", "15432"]);
        assert!(matching(&parse_env(ENV), &parse_status(STATUS), &s)[&Service::Postgres].is_err());
    }

    #[test]
    fn urls_give_their_hosts_and_ports() {
        assert_eq!(
            endpoints("mongodb://u:p@a:1,b:2/db?x=y"),
            [("a".into(), Some(1)), ("b".into(), Some(2))]
        );
        assert_eq!(endpoints("http://h:8083/"), [("h".into(), Some(8083))]);
        assert_eq!(endpoints("h"), [("h".into(), None)]);
    }
}
