//! `--metrics-listen` scraped by a real Prometheus server (Debian's `prometheus` package;
//! `.ci/run` installs it): after a 5,000-event load, Prometheus's own HTTP API returns the
//! applied count and a p99. Needs `scripts/stack.sh up`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{text, Spawned};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One instant-query result of Prometheus, as a number (None while it has no sample).
async fn query(http: &reqwest::Client, prometheus: &str, q: &str) -> Option<f64> {
    let r: serde_json::Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    r["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn prometheus_scrapes_the_applied_count_and_a_p99() {
    common::shared_stack();
    let _cleanup = common::Cleanup(|| common::pipedemo("prom"));
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Prometheus is not installed: apt-get install prometheus (.ci/run does)");

    let o = common::pipedemo("prom").arg("setup").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // A consumer of the same topic with its own group, read models and metrics file, serving
    // /metrics while the load runs.
    let port = free_port();
    let mut consume = Spawned::start(
        common::pipedemo("prom")
            .env("CONSUMER_GROUP", "pipedemo-test-prom_export")
            .env("MONGODB_DATABASE", "pipedemo_test_prom_export")
            .env("METRICS_FILE", common::metrics_file("prom_export"))
            .args(["consume", "--metrics-listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::piped()),
    );
    let stderr = consume.child().stderr.take().unwrap();
    let (joined_tx, joined) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("partitions assigned") {
                let _ = joined_tx.send(());
            }
        }
    });
    joined
        .recv_timeout(Duration::from_secs(60))
        .expect("the exporting consumer joined its group");

    // Prometheus, scraping it and the load (below) every second.
    let load_port = free_port();
    let dir = std::env::temp_dir().join(format!("pipedemo-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pipedemo\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        labels: {{role: consume}}\n      - targets: ['127.0.0.1:{load_port}']\n        labels: {{role: load}}\n"
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let _prometheus = Spawned::start(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );

    let o = common::pipedemo("prom")
        .args(["load", "--events", "5000", "--rate", "500", "--no-tui"])
        .args(["--metrics-listen", &format!("localhost:{load_port}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{prom_port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut applied = None;
    while Instant::now() < deadline {
        applied = query(&http, &api, "sum(pipedemo_events_applied_total)").await;
        if applied == Some(5000.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(applied, Some(5000.0), "Prometheus's applied count");
    let joins = query(
        &http,
        &api,
        "pipedemo_events_applied_total{type=\"ParticipantJoined\"}",
    )
    .await;
    assert_eq!(joins, Some(1000.0), "20 % of 5,000 are joins");
    let p99 = query(
        &http,
        &api,
        "histogram_quantile(0.99, sum by (le) (pipedemo_end_to_end_latency_seconds_bucket{role=\"consume\",from=\"insert\"}))",
    )
    .await
    .expect("a p99 from the consumer's end-to-end histogram");
    assert!(p99 > 0.0 && p99 < 30.0, "p99 {p99} s");
    let lag = query(&http, &api, "pipedemo_consumer_lag{role=\"consume\"}").await;
    assert!(lag.is_some(), "the consumer lag is exported");
    // The stages are the parts only: summing over them is the end to end, not twice it.
    let total = query(
        &http,
        &api,
        "count(pipedemo_stage_latency_seconds_bucket{stage=\"total\"})",
    )
    .await;
    assert_eq!(total, None, "no `total` stage");
    let stages = query(
        &http,
        &api,
        "count(count by (stage) (pipedemo_stage_latency_seconds_count{role=\"consume\"}))",
    )
    .await;
    assert_eq!(stages, Some(4.0), "four stages");
    // A consumer generates nothing: no offered count, no backlog (absent, not 0).
    for absent in [
        "pipedemo_backlog{role=\"consume\"}",
        "pipedemo_events_offered_total{role=\"consume\"}",
    ] {
        assert_eq!(query(&http, &api, absent).await, None, "{absent}");
    }
    let running = query(
        &http,
        &api,
        "pipedemo_connector_state{role=\"consume\",state=\"RUNNING\"}",
    )
    .await;
    assert_eq!(running, Some(1.0), "the connector state");
    let info = query(
        &http,
        &api,
        "count(last_over_time(pipedemo_build_info{version!=\"\"}[5m]))",
    )
    .await;
    assert_eq!(info, Some(2.0), "build info from both processes");
    // The paced load, scraped while it ran (it has exited since: the last samples).
    let offered = query(
        &http,
        &api,
        "max(last_over_time(pipedemo_events_offered_total{role=\"load\"}[5m]))",
    )
    .await
    .expect("the load's offered count");
    assert!(offered > 0.0 && offered <= 5000.0, "offered {offered}");
    let from_schedule = query(
        &http,
        &api,
        "histogram_quantile(0.99, sum by (le) (last_over_time(pipedemo_end_to_end_latency_seconds_bucket{role=\"load\",from=\"schedule\"}[5m])))",
    )
    .await
    .expect("the load's p99 from schedule");
    assert!(
        from_schedule > 0.0 && from_schedule < 30.0,
        "p99 from schedule {from_schedule} s"
    );
    consume.signal("-TERM");
    let _ = consume.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
