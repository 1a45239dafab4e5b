//! The benchmark behind scripts/bench.sh: every stage against a baseline measured in the same
//! run, printed as a table and written to bench/results.json. Needs the stack up and a release
//! build of pipedemo (bench.sh does both).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use pipedemo::config::Settings;
use pipedemo::pipeline::consumer::{self, ConsumerOptions};
use pipedemo::pipeline::kafka::{self, ResetTo};
use pipedemo::pipeline::store::ReadModels;
use pipedemo::pipeline::{generator, outbox};
use pipedemo::telemetry::clock;
use pipedemo::telemetry::cpu::{self, Service};
use pipedemo::telemetry::metrics::{self, MetricEvent};

mod clocks;
mod costs;
mod hosts;

#[derive(Parser)]
struct Args {
    /// Events pre-filled into the topic for the consumer-alone measurement.
    #[arg(long, default_value_t = 50_000)]
    consumer_events: u64,
    /// Messages the Python reference consumer handles (its rate is steady; fewer saves time).
    #[arg(long, default_value_t = 3_000)]
    reference_events: u64,
    /// Rows for the generator-vs-COPY measurement.
    #[arg(long, default_value_t = 20_000)]
    generator_events: u64,
    /// Open-loop rates, events/s.
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    rates: Vec<u64>,
    /// Seconds per open-loop rate.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Events of the burst.
    #[arg(long, default_value_t = 10_000)]
    burst: u64,
    /// The pipedemo binary.
    #[arg(long, default_value = "target/release/pipedemo")]
    pipedemo: PathBuf,
    /// Python with confluent-kafka and pymongo, for the reference consumer.
    #[arg(long, env = "BENCH_PYTHON", default_value = "python3")]
    python: String,
    /// Seconds per step of the capacity sweep (goal 1 wants at least 15).
    #[arg(long, default_value_t = 15)]
    capacity_step: u64,
    /// The rate of the latency-floor run (goal 2), events/s.
    #[arg(long, default_value_t = 1000)]
    floor_rate: u64,
    /// Run only these sections (regression, costs, generator, stages, consumer, capacity,
    /// floor, open-loop, burst, scale-out, defaults, routing, soak, chaos, show, hosts,
    /// publishing); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The consumer's largest batch.
    #[arg(long, default_value_t = ConsumerOptions::default().max_batch)]
    max_batch: usize,
    /// Where to write the results.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// The baseline's pipedemo binary (scripts/bench.sh --baseline REV builds it): every
    /// figure of the regression section is measured for both, interleaved, as new ÷ baseline.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The baseline's name in the tables (its commit).
    #[arg(long, default_value = "baseline")]
    baseline_label: String,
    /// Rounds of the regression section (A B A B … per figure).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Open-loop rates of the regression section, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000")]
    ab_rates: Vec<u64>,
    /// `pipedemo capacity` runs of the regression section, per binary.
    #[arg(long, default_value_t = 3)]
    capacity_runs: usize,
    /// Rounds of the routing section (each mode in turn per round).
    #[arg(long, default_value_t = 2)]
    routing_rounds: usize,
    /// Offered rates of the costs section, events/s (each for `--seconds`).
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,4000")]
    cost_rates: Vec<u64>,
    /// Transaction windows, in ms, at which the costs section also offers
    /// `--cost-window-rate` (`load --tx-window`): what a window costs is paid per transaction
    /// by every process, so this prints the trade of CPU per event against latency.
    #[arg(long, value_delimiter = ',')]
    cost_windows: Vec<u64>,
    /// The offered rate of `--cost-windows`, events/s.
    #[arg(long, default_value_t = 1000)]
    cost_window_rate: u64,
    /// The rate of the costs section's perf profile (0: none).
    #[arg(long, default_value = "1000")]
    profile_rate: Option<u64>,
    /// The rate at which the routing section compares the modes, events/s.
    #[arg(long, default_value_t = 1000)]
    routing_rate: u64,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Serialize, Clone)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    baseline: Option<(String, f64)>,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
    /// new ÷ baseline over the rounds: lowest and highest ratio of any two runs.
    spread: Option<(f64, f64)>,
    /// Every run's value: this build's, the baseline's.
    samples: Option<(Vec<f64>, Vec<f64>)>,
}

fn figure(name: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit,
        baseline: None,
        ratio: None,
        target: String::new(),
        met: None,
        spread: None,
        samples: None,
    }
}

fn versus(
    name: &str,
    value: f64,
    unit: &'static str,
    base_name: &str,
    base: f64,
    min_ratio: f64,
) -> Figure {
    let ratio = if base > 0.0 { value / base } else { 0.0 };
    Figure {
        name: name.into(),
        value,
        unit,
        baseline: Some((base_name.into(), base)),
        ratio: Some(ratio),
        target: format!("≥ {min_ratio}× {base_name}"),
        met: Some(ratio >= min_ratio),
        spread: None,
        samples: None,
    }
}

fn at_most(mut f: Figure, max: f64) -> Figure {
    f.target = format!("≤ {max} {}", f.unit);
    f.met = Some(f.value <= max);
    f
}

fn at_least(mut f: Figure, min: f64) -> Figure {
    f.target = format!("≥ {min} {}", f.unit);
    f.met = Some(f.value >= min);
    f
}

/// Resources of a child process, sampled every 200 ms from /proc.
#[derive(Default, Clone, Copy, Serialize)]
struct Usage {
    max_rss_mb: f64,
    cpu_percent: f64,
}

fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Runs `pipedemo ARGS` with env, returns its stdout parsed as JSON and its resource use.
fn run_pipedemo(a: &Args, env: &[(&str, &str)], args: &[&str]) -> Result<(Value, Usage)> {
    let mut cmd = Command::new(&a.pipedemo);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("running {}", a.pipedemo.display()))?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max_rss: f64 = 0.0;
            let mut ticks = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some(r) = proc_rss_mb(pid) {
                    max_rss = max_rss.max(r);
                }
                if let Some(t) = proc_cpu_ticks(pid) {
                    ticks = t;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (max_rss, ticks)
        })
    };
    let out = child.wait_with_output()?;
    done.store(true, Ordering::Relaxed);
    let (max_rss, ticks) = sampler.join().expect("sampler");
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "pipedemo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let clk = 100.0; // USER_HZ on Linux
    let usage = Usage {
        max_rss_mb: max_rss,
        cpu_percent: ticks as f64 / clk / secs * 100.0,
    };
    let v = if args.contains(&"--json") {
        serde_json::from_slice(&out.stdout)?
    } else {
        Value::Null
    };
    Ok((v, usage))
}

fn ms(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

async fn generator_vs_copy(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let pg = outbox::connect(&a.settings.pg).await?;
    // The scratch table copies event_outbox, which a fresh stack does not have yet.
    outbox::create_table(&pg).await?;
    pg.batch_execute(
        "DROP TABLE IF EXISTS bench_outbox; CREATE TABLE bench_outbox (LIKE event_outbox INCLUDING ALL)",
    )
    .await?;
    let events = generator::generate(a.generator_events, Some(42));
    // As the outbox writer does: a prepared INSERT, or COPY for many rows.
    let insert = outbox::prepare_insert_into(&pg, "bench_outbox").await?;
    let mut rates = Vec::new();
    for batch in [5, 100, 1000] {
        pg.batch_execute("TRUNCATE bench_outbox").await?;
        let t = Instant::now();
        for chunk in events.chunks(batch) {
            if outbox::by_copy(chunk.len()) {
                outbox::insert_batch_into(&pg, "bench_outbox", chunk).await?;
            } else {
                outbox::insert_prepared(&pg, &insert, chunk).await?;
            }
        }
        rates.push((batch, events.len() as f64 / t.elapsed().as_secs_f64()));
    }
    pg.batch_execute("TRUNCATE bench_outbox").await?;
    // The baseline: the same rows as one COPY.
    let t = Instant::now();
    outbox::insert_batch_into(&pg, "bench_outbox", &events).await?;
    let copy_rate = events.len() as f64 / t.elapsed().as_secs_f64();
    pg.batch_execute("DROP TABLE bench_outbox").await?;
    for (batch, rate) in rates {
        figs.push(versus(
            &format!("goal 3: generator insert rate ({batch} rows per transaction)"),
            rate,
            "rows/s",
            "one COPY BINARY of all rows",
            copy_rate,
            0.7,
        ));
    }
    Ok(())
}

fn with_db(s: &Settings, db: &str, group: &str) -> Settings {
    let mut s = s.clone();
    s.mongo.mongodb_database = db.into();
    s.kafka.group = group.into();
    s
}

async fn wait_topic_filled(s: &Settings, from: i64, n: i64) -> Result<f64> {
    let t = Instant::now();
    loop {
        let high = topic_end(s).await?;
        if high - from >= n {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the topic got {} of {n} events in 600 s", high - from);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn topic_end(s: &Settings) -> Result<i64> {
    let s2 = s.clone();
    let topic = s.kafka.topic();
    tokio::task::spawn_blocking(move || -> Result<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = kafka::client_config(&s2.kafka).create()?;
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let mut sum = 0;
        for p in md.topics()[0].partitions() {
            sum += c
                .fetch_watermarks(&topic, p.id(), Duration::from_secs(10))?
                .1;
        }
        Ok(sum)
    })
    .await?
}

/// Goal 4, the first two stages alone: PostgreSQL insert → Debezium → Kafka with nothing
/// consuming (CDC), then the same records produced to a scratch topic and consumed back
/// (Kafka). Returns their rates, events/s.
async fn stages_alone(a: &Args, figs: &mut Vec<Figure>) -> Result<(f64, f64)> {
    let n = a.consumer_events;
    run_pipedemo(a, &[], &["setup"])?;
    let before = topic_end(&a.settings).await?;
    let pg = outbox::connect(&a.settings.pg).await?;
    let t = Instant::now();
    for chunk in generator::generate(n, Some(5)).chunks(1000) {
        outbox::insert_batch(&pg, chunk).await?;
    }
    let insert_secs = t.elapsed().as_secs_f64();
    wait_topic_filled(&a.settings, before, n as i64).await?;
    let cdc = n as f64 / t.elapsed().as_secs_f64();
    let mut f = figure(
        "stage alone: CDC (insert → Debezium → Kafka)",
        cdc,
        "events/s",
    );
    f.target = format!("{n} events; the inserts alone took {insert_secs:.2} s");
    figs.push(f);

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let scratch = format!("bench-kafka-alone-{}", std::process::id());
    let admin: AdminClient<_> = kafka::client_config(&a.settings.kafka).create()?;
    admin
        .create_topics(
            &[NewTopic::new(&scratch, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let (s, topic, to) = (
        a.settings.clone(),
        a.settings.kafka.topic(),
        scratch.clone(),
    );
    let kafka_rate =
        tokio::task::spawn_blocking(move || kafka_alone(&s, &topic, before, n, &to)).await;
    let _ = admin.delete_topics(&[&scratch], &AdminOptions::new()).await;
    let kafka_rate = kafka_rate??;
    let mut f = figure(
        "stage alone: Kafka produce → consume",
        kafka_rate,
        "events/s",
    );
    f.target = "the CDC records, acks=all, one partition".into();
    figs.push(f);
    Ok((cdc, kafka_rate))
}

/// Copies `n` records of `topic` from `from` into memory, then times producing them to the
/// empty topic `scratch` while a consumer reads them back: first send to last receive.
fn kafka_alone(s: &Settings, topic: &str, from: i64, n: u64, scratch: &str) -> Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let mut records: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::with_capacity(n as usize);
    let reader: BaseConsumer = kafka::client_config(&s.kafka)
        .set("group.id", "bench-kafka-alone-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (records.len() as u64) < n && Instant::now() < deadline {
        if let Some(m) = reader.poll(Duration::from_millis(500)) {
            let m = m?;
            records.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    let producer: BaseProducer = kafka::client_config(&s.kafka)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let consumer: BaseConsumer = kafka::client_config(&s.kafka)
        .set("group.id", "bench-kafka-alone")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(scratch, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let received = std::sync::atomic::AtomicU64::new(0);
    let want = records.len() as u64;
    let t = Instant::now();
    let elapsed = std::thread::scope(|sc| {
        let reading = sc.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(300);
            while received.load(Ordering::Relaxed) < want && Instant::now() < deadline {
                if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            t.elapsed()
        });
        for (k, v) in &records {
            let mut rec = BaseRecord::<Vec<u8>, Vec<u8>>::to(scratch).payload(v);
            if let Some(k) = k {
                rec = rec.key(k);
            }
            let mut rec = Some(rec);
            while let Some(r) = rec.take() {
                if let Err((_, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(1));
                    rec = Some(r);
                }
            }
            producer.poll(Duration::ZERO);
        }
        let _ = producer.flush(Duration::from_secs(60));
        reading.join().expect("reader")
    });
    let got = received.load(Ordering::Relaxed);
    if got < want {
        bail!("Kafka alone: {got} of {want} records came back");
    }
    Ok(want as f64 / elapsed.as_secs_f64())
}

/// Goal 1: `pipedemo capacity` on this machine, with the CPU split at its knee.
fn capacity(a: &Args, figs: &mut Vec<Figure>) -> Result<Option<f64>> {
    let step = format!("{}s", a.capacity_step);
    let (v, _) = run_pipedemo(a, &[], &["capacity", "--step", &step, "--json", "--no-tui"])?;
    let sustained = v["sustained_eps"].as_f64();
    let mut f = at_least(
        figure(
            "goal 1: capacity at p99 ≤ 50 ms (pipedemo capacity)",
            sustained.unwrap_or(0.0),
            "events/s",
        ),
        8000.0,
    );
    f.target = format!(
        "{}; {} s steps; limited by {}",
        f.target,
        a.capacity_step,
        v["limiting_stage"].as_str().unwrap_or("?")
    );
    figs.push(f);
    for step in v["steps"].as_array().into_iter().flatten() {
        let cpu: Vec<String> = step["cpu_pct"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, c)| format!("{k} {:.0}", c.as_f64().unwrap_or(0.0)))
            .collect();
        let mut f = figure(
            &format!(
                "  capacity step {:.0} ev/s: p50 / p99 from schedule",
                step["offered_eps"].as_f64().unwrap_or(0.0)
            ),
            ms(&step["latency"], &["p50_ms"]),
            "ms",
        );
        f.target = format!(
            "p99 {:.1} ms; {}; CPU % of a core: {}",
            ms(&step["latency"], &["p99_ms"]),
            if step["verdict"]["sustained"].as_bool() == Some(true) {
                "sustained"
            } else {
                "not sustained"
            },
            cpu.join(", ")
        );
        figs.push(f);
    }
    Ok(sustained)
}

/// Goal 2: the latency floor, open loop at `--floor-rate`.
fn floor(a: &Args, figs: &mut Vec<Figure>) -> Result<Usage> {
    let env = [
        ("MONGODB_DATABASE", "bench_e2e"),
        ("CONSUMER_GROUP", "bench-e2e"),
    ];
    let (v, u) = open_loop(a, a.floor_rate, a.seconds, &env)?;
    let sched = &v["total_from_schedule"];
    let label = format!("goal 2: floor at {} ev/s", a.floor_rate);
    for (key, name, max) in [
        ("p50_ms", "p50", 4.0),
        ("p99_ms", "p99", 10.0),
        ("p999_ms", "p99.9", 20.0),
    ] {
        figs.push(at_most(
            figure(
                &format!("{label}, {name} from schedule"),
                ms(sched, &[key]),
                "ms",
            ),
            max,
        ));
    }
    figs.push(figure(
        &format!("{label}, p95 from schedule"),
        ms(sched, &["p95_ms"]),
        "ms",
    ));
    stage_figures(figs, &label, &v);
    Ok(u)
}

/// Goals 3 and 4: pipedemo's consumer alone from a pre-filled topic, against a raw bulk insert
/// of the same documents (MongoDB alone) and the Python reference consumer. Returns the
/// consumer's and the raw bulk rates, events/s.
async fn consumer_alone(a: &Args, figs: &mut Vec<Figure>) -> Result<(f64, f64)> {
    let n = a.consumer_events;
    run_pipedemo(a, &[], &["setup"])?;
    let before = topic_end(&a.settings).await?;
    let start_ms = clock::now_us() / 1000;
    let pg = outbox::connect(&a.settings.pg).await?;
    for chunk in generator::generate(n, Some(7)).chunks(1000) {
        outbox::insert_batch(&pg, chunk).await?;
    }
    let secs = wait_topic_filled(&a.settings, before, n as i64).await?;
    eprintln!("bench: topic pre-filled with {n} envelopes ({secs:.1} s after the inserts began)");

    // pipedemo's consumer, from the first pre-filled message to the last write.
    let s = with_db(&a.settings, "bench_consumer", "bench-consumer");
    let store = ReadModels::connect(&s.mongo).await?;
    store.drop_all().await?;
    store.ensure_indexes().await?;
    kafka::reset_group(&s.kafka, &s.kafka.topic(), ResetTo::Timestamp(start_ms)).await?;
    let (tx, mut rx) = metrics::channel();
    let opts = ConsumerOptions {
        max_batch: a.max_batch,
        ..ConsumerOptions::default()
    };
    let ours = pipedemo::provision::ownership::own_topics(&s).await?;
    let running = consumer::start(&s, ours, opts, tx, &CancellationToken::new()).await?;
    let (mut first, mut last, mut seen) = (i64::MAX, 0i64, 0u64);
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(MetricEvent::Event(r))) => {
                first = first.min(r.timing.t3_us);
                last = last.max(r.timing.t5_us);
                seen += 1;
            }
            Ok(Some(_)) => {}
            _ => bail!("the consumer stalled after {seen} of {n} events"),
        }
    }
    running.finish().await?;
    let pipedemo_rate = n as f64 / ((last - first) as f64 / 1e6);

    // Raw bulk insert of the resulting documents into the same server.
    let db = store.database();
    let raw = ReadModels::connect(&with_db(&a.settings, "bench_raw", "x").mongo).await?;
    raw.drop_all().await?;
    let t = Instant::now();
    for coll in ["users", "activities"] {
        let docs: Vec<Document> = db
            .collection::<Document>(coll)
            .find(doc! {})
            .await?
            .try_collect()
            .await?;
        for chunk in docs.chunks(1000) {
            raw.database()
                .collection::<Document>(coll)
                .insert_many(chunk)
                .ordered(false)
                .await?;
        }
    }
    let raw_rate = n as f64 / t.elapsed().as_secs_f64();
    raw.drop_all().await?;
    figs.push(versus(
        "goal 3: consumer alone (events → read models)",
        pipedemo_rate,
        "events/s",
        "raw bulk insert of the same documents",
        raw_rate,
        0.7,
    ));

    // The seed-style reference consumer in Python, one write per message.
    let group = format!("bench-reference-{}", std::process::id());
    let rs = with_db(&a.settings, "bench_reference", &group);
    ReadModels::connect(&rs.mongo).await?.drop_all().await?;
    kafka::reset_group(&rs.kafka, &rs.kafka.topic(), ResetTo::Timestamp(start_ms)).await?;
    let out = Command::new(&a.python)
        .args([
            "benches/reference_consumer.py",
            &rs.kafka.bootstrap_servers,
            &rs.kafka.topic(),
            &group,
            rs.mongo.mongodb_uri.expose(),
            "bench_reference",
            &a.reference_events.to_string(),
        ])
        .output()
        .context("running the Python reference consumer")?;
    if !out.status.success() {
        bail!(
            "reference consumer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: Value = serde_json::from_slice(&out.stdout)?;
    eprintln!("bench: reference consumer {r}");
    ReadModels::connect(&rs.mongo).await?.drop_all().await?;
    figs.push(versus(
        "consumer alone vs reference",
        pipedemo_rate,
        "events/s",
        "Python reference consumer (seed design)",
        r["rate"].as_f64().unwrap_or(0.0),
        10.0,
    ));
    store.drop_all().await?;
    Ok((pipedemo_rate, raw_rate))
}

/// One open-loop run at `rate` for `secs`, returning the load JSON and resources.
fn open_loop(a: &Args, rate: u64, secs: u64, env: &[(&str, &str)]) -> Result<(Value, Usage)> {
    run_pipedemo(a, env, &["setup"])?;
    let events = (rate * secs).to_string();
    run_pipedemo(
        a,
        env,
        &[
            "load",
            "--events",
            &events,
            "--rate",
            &rate.to_string(),
            "--json",
            "--no-tui",
        ],
    )
}

fn burst(a: &Args, env: &[(&str, &str)]) -> Result<(Value, Usage)> {
    run_pipedemo(a, env, &["setup"])?;
    burst_load(a, env)
}

/// The burst itself, on whatever connector setup left.
fn burst_load(a: &Args, env: &[(&str, &str)]) -> Result<(Value, Usage)> {
    run_pipedemo(
        a,
        env,
        &[
            "load",
            "--events",
            &a.burst.to_string(),
            "--batch-size",
            "1000",
            "--json",
            "--no-tui",
        ],
    )
}

fn latency_figures(figs: &mut Vec<Figure>, label: &str, v: &Value, targets: bool) {
    let sched = &v["total_from_schedule"];
    let p50 = figure(
        &format!("{label}: p50 from schedule"),
        ms(sched, &["p50_ms"]),
        "ms",
    );
    let p99 = figure(
        &format!("{label}: p99 from schedule"),
        ms(sched, &["p99_ms"]),
        "ms",
    );
    if targets {
        figs.push(at_most(p50, 15.0));
        figs.push(at_most(p99, 60.0));
    } else {
        figs.push(p50);
        figs.push(p99);
    }
    figs.push(figure(
        &format!("{label}: p95 from schedule"),
        ms(sched, &["p95_ms"]),
        "ms",
    ));
    figs.push(figure(
        &format!("{label}: p99.9 from schedule"),
        ms(sched, &["p999_ms"]),
        "ms",
    ));
    stage_figures(figs, label, v);
}

/// Each stage's p50 (value) and p99 (in the target column) of a load's JSON.
fn stage_figures(figs: &mut Vec<Figure>, label: &str, v: &Value) {
    for (k, name) in [
        ("1_cdc_capture", "CDC"),
        ("2_kafka_delivery", "Kafka"),
        ("3_consumer_poll", "poll"),
        ("4_processing", "processing"),
    ] {
        figs.push(figure(
            &format!("{label}: {name} p50 / p99"),
            ms(v, &["stages", k, "p50_ms"]),
            "ms",
        ));
        let last = figs.last_mut().expect("just pushed");
        last.target = format!("p99 {:.1} ms", ms(v, &["stages", k, "p99_ms"]));
    }
}

/// Several `pipedemo consume` processes in one group on a topic with 4 partitions keyed by
/// aggregate: throughput with 1 and with 2 consumers, and per-aggregate order (no join may be
/// dead-lettered for arriving before its activity, and verify must pass).
async fn scale_out(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let n = a.consumer_events.min(20_000);
    let base = [
        ("TOPIC_PREFIX", "benchscale"),
        ("CONNECTOR_NAME", "bench-scale"),
        ("REPLICATION_SLOT", "bench_scale"),
    ];
    let mut scale = with_db(&a.settings, "bench_scale", "x");
    scale.kafka.topic_prefix = "benchscale".into();
    run_pipedemo(a, &base, &["setup", "--partitions", "4"])?;
    let before = topic_end(&scale).await?;
    let start_ms = clock::now_us() / 1000;
    let pg = outbox::connect(&a.settings.pg).await?;
    for chunk in generator::generate(n, Some(11)).chunks(1000) {
        outbox::insert_batch(&pg, chunk).await?;
    }
    wait_topic_filled(&scale, before, n as i64).await?;
    let mut rates = Vec::new();
    for k in [1usize, 2] {
        let db = format!("bench_scale_{k}");
        let group = format!("bench-scale-{k}-{}", std::process::id());
        let s = with_db(&scale, &db, &group);
        let store = ReadModels::connect(&s.mongo).await?;
        store.drop_all().await?;
        store.ensure_indexes().await?;
        kafka::reset_group(&s.kafka, &s.kafka.topic(), ResetTo::Timestamp(start_ms)).await?;
        let mut children = Vec::new();
        let files: Vec<PathBuf> = (0..k)
            .map(|i| std::env::temp_dir().join(format!("pipedemo-scale-{k}-{i}.jsonl")))
            .collect();
        for f in &files {
            let _ = std::fs::remove_file(f);
            let mut cmd = Command::new(&a.pipedemo);
            cmd.arg("consume")
                .envs(base)
                .env("MONGODB_DATABASE", &db)
                .env("CONSUMER_GROUP", &group)
                .env("METRICS_FILE", f)
                .env("LOG_LEVEL", "warn");
            children.push(cmd.spawn()?);
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        let (mut first, mut last, mut events, mut dead) = (i64::MAX, 0, 0u64, 0u64);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (first, last, events, dead) = (i64::MAX, 0, 0, 0);
            for f in &files {
                if let Ok((evs, _)) = metrics::read_file(f) {
                    for ev in evs {
                        match ev {
                            MetricEvent::Event(r) => {
                                first = first.min(r.timing.t3_us);
                                last = last.max(r.timing.t5_us);
                                events += 1;
                            }
                            MetricEvent::Error(_) => dead += 1,
                            _ => {}
                        }
                    }
                }
            }
            if events + dead >= n {
                break;
            }
        }
        for c in &mut children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for mut c in children {
            let _ = c.wait();
        }
        let rate = events as f64 / ((last - first).max(1) as f64 / 1e6);
        let mut f = figure(
            &format!("scale-out: {k} consumer(s), 4 partitions"),
            rate,
            "events/s",
        );
        f.target = format!("{events} of {n} written, {dead} dead-lettered");
        f.met = Some(events == n && dead == 0);
        figs.push(f);
        rates.push(rate);
        store.drop_all().await?;
    }
    if let [one, two] = rates[..] {
        let mut f = versus(
            "scale-out: 2 consumers vs 1",
            two,
            "events/s",
            "1 consumer",
            one,
            1.0,
        );
        f.target = "grows with consumers (> 1×)".into();
        f.met = Some(two > one);
        figs.push(f);
    }
    // Remove the second connector and its slot, so PostgreSQL does not keep WAL for them.
    let _ = reqwest::Client::new()
        .delete(format!(
            "{}/connectors/bench-scale",
            a.settings.connect.connect_url
        ))
        .send()
        .await;
    for _ in 0..50 {
        let r = pg
            .query_opt(
                "SELECT pg_drop_replication_slot('bench_scale') WHERE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'bench_scale')",
                &[],
            )
            .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn debezium_defaults(a: &Args, env: &[(&str, &str)], figs: &mut Vec<Figure>) -> Result<()> {
    eprintln!("bench: Debezium defaults beside the tuned settings");
    run_pipedemo(a, env, &["setup", "--debezium-defaults"])?;
    let defaults = (|| -> Result<(Value, Value)> {
        let (v500, _) = run_pipedemo(
            a,
            env,
            &[
                "load", "--events", "5000", "--rate", "500", "--json", "--no-tui",
            ],
        )?;
        let (vb, _) = burst_load(a, env)?;
        Ok((v500, vb))
    })();
    run_pipedemo(a, &[], &["setup"])?; // back to the tuned connector, whatever happened
    let (v500, vb) = defaults?;
    let tuned500 = figs
        .iter()
        .find(|f| f.name == "500 ev/s: p50 from schedule")
        .map_or(f64::NAN, |f| f.value);
    let mut f = figure(
        "Debezium defaults: 500 ev/s p50 from schedule",
        ms(&v500["total_from_schedule"], &["p50_ms"]),
        "ms",
    );
    f.target = format!("tuned: {tuned500:.1} ms");
    figs.push(f);
    figs.push(figure(
        "Debezium defaults: 500 ev/s p99 from schedule",
        ms(&v500["total_from_schedule"], &["p99_ms"]),
        "ms",
    ));
    figs.push(figure(
        "Debezium defaults: burst sustained end to end",
        ms(&vb, &["throughput_eps"]),
        "events/s",
    ));

    Ok(())
}

/// The outbox as teams deploy it beside the original design (issue 24): raw change events
/// or Debezium's Outbox Event Router, rows kept or deleted in their own transaction. Per
/// round, each mode in turn: one step at `--routing-rate` (latency from schedule, and each
/// service's CPU per event: the router's cost is in Connect's) and a capacity sweep. Each
/// figure is the mode's median beside raw's, as mode ÷ raw with the spread.
fn routing_modes(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    const MODES: [(&str, &str, bool); 4] = [
        ("raw", "raw", false),
        ("event-router", "event-router", false),
        ("raw + outbox-delete", "raw", true),
        ("event-router + outbox-delete", "event-router", true),
    ];
    let env = [
        ("MONGODB_DATABASE", "bench_routing"),
        ("CONSUMER_GROUP", "bench-routing"),
        ("METRICS_FILE", "/tmp/pipedemo-bench-routing.jsonl"),
    ];
    let rate = a.routing_rate.to_string();
    let step = format!("{}s", a.capacity_step);
    // Per mode: p50, p99, pipedemo and Connect CPU µs per event, capacity.
    let mut samples: Vec<[Vec<f64>; 5]> = vec![Default::default(); MODES.len()];
    for round in 0..a.routing_rounds {
        // Each round starts with the next mode: a stack that slows within a round must not
        // always weigh on the same one.
        let order = (0..MODES.len()).map(|k| (k + round) % MODES.len());
        for (i, (name, routing, delete)) in order.map(|i| (i, &MODES[i])) {
            eprintln!(
                "bench: routing round {} of {}: {name}",
                round + 1,
                a.routing_rounds
            );
            run_pipedemo(a, &env, &["--routing", routing, "setup"])?;
            let mut args = vec![
                "--routing",
                routing,
                "capacity",
                "--start-rate",
                &rate,
                "--max-rate",
                &rate,
                "--step",
                &step,
                "--prewarm",
                "10s",
                "--json",
                "--no-tui",
            ];
            if *delete {
                args.push("--outbox-delete");
            }
            let (v, _) = run_pipedemo(a, &env, &args)?;
            let at = &v["steps"][0];
            let per_event = |service: &str| {
                at["cpu_pct"][service].as_f64().unwrap_or(f64::NAN) / 100.0 / a.routing_rate as f64
                    * 1e6
            };
            samples[i][0].push(ms(&at["latency"], &["p50_ms"]));
            samples[i][1].push(ms(&at["latency"], &["p99_ms"]));
            samples[i][2].push(per_event("pipedemo"));
            samples[i][3].push(per_event("connect"));
            args.truncate(2);
            args.extend(["capacity", "--step", &step, "--json", "--no-tui"]);
            if *delete {
                args.push("--outbox-delete");
            }
            let (v, _) = run_pipedemo(a, &env, &args)?;
            samples[i][4].push(v["sustained_eps"].as_f64().unwrap_or(0.0));
        }
    }
    run_pipedemo(a, &env, &["setup"])?; // back to raw, as the other sections expect
    let names = [
        (format!("{} ev/s: p50 from schedule", a.routing_rate), "ms"),
        (format!("{} ev/s: p99 from schedule", a.routing_rate), "ms"),
        ("pipedemo CPU per event".to_owned(), "µs"),
        ("Kafka Connect CPU per event".to_owned(), "µs"),
        (
            format!("capacity ({} s steps)", a.capacity_step),
            "events/s",
        ),
    ];
    for (i, (mode, _, _)) in MODES.iter().enumerate() {
        for (k, (what, unit)) in names.iter().enumerate() {
            let name = format!("routing {mode}: {what}");
            figs.push(if i == 0 {
                let mut f = figure(&name, median(&samples[0][k]), unit);
                f.samples = Some((samples[0][k].clone(), Vec::new()));
                f
            } else {
                ab_figure(
                    &name,
                    unit,
                    samples[i][k].clone(),
                    samples[0][k].clone(),
                    "raw",
                )
            });
        }
    }
    Ok(())
}

/// The median of `v` (NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A figure measured for both binaries: the medians, new ÷ baseline, and the spread of that
/// ratio (lowest new ÷ highest baseline … highest new ÷ lowest baseline).
fn ab_figure(name: &str, unit: &'static str, new: Vec<f64>, old: Vec<f64>, label: &str) -> Figure {
    let (n, o) = (median(&new), median(&old));
    let fin = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    let (fnew, fold) = (fin(&new), fin(&old));
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spread = (!fnew.is_empty() && !fold.is_empty() && lo(&fold) > 0.0)
        .then(|| (lo(&fnew) / hi(&fold), hi(&fnew) / lo(&fold)));
    let mut f = figure(name, n, unit);
    if !old.is_empty() {
        f.baseline = Some((label.to_owned(), o));
        f.ratio = (o > 0.0).then(|| n / o);
        f.spread = spread;
    }
    f.samples = Some((new, old));
    f
}

/// CPU seconds per service while a child runs: /proc sampled every 200 ms, each pid's growth
/// added up (PostgreSQL backends exit with their connection and take their ticks along).
struct CpuTracker {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<Service, f64>>,
}

impl CpuTracker {
    fn start() -> CpuTracker {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = std::thread::spawn(move || {
            let mut last: std::collections::HashMap<u32, u64> = cpu::processes()
                .into_iter()
                .map(|(pid, _, t)| (pid, t))
                .collect();
            let mut total: BTreeMap<Service, u64> = BTreeMap::new();
            loop {
                let stop = d.load(Ordering::Relaxed);
                for (pid, s, t) in cpu::processes() {
                    // The bench's own process is not the pipeline.
                    if s == Service::Pipedemo {
                        continue;
                    }
                    let before = last.insert(pid, t).unwrap_or(0);
                    *total.entry(s).or_default() += t.saturating_sub(before);
                }
                if stop {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            total
                .into_iter()
                .map(|(s, t)| (s, t as f64 / 100.0))
                .collect()
        });
        CpuTracker { done, thread }
    }

    fn stop(self) -> BTreeMap<Service, f64> {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().expect("cpu tracker")
    }
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu_secs() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// `setup` for `bin`, taking over what the other binary's setup left (`--force` where the
/// binary has it: an older pipedemo may not mark what it creates).
fn ab_setup(bin: &std::path::Path, env: &[(&str, &str)]) -> Result<()> {
    let help = Command::new(bin).args(["setup", "--help"]).output()?;
    let force = String::from_utf8_lossy(&help.stdout).contains("--force");
    let mut args = vec!["setup"];
    if force {
        args.push("--force");
    }
    run_bin(bin, env, &args).map(|_| ())
}

/// Runs `bin ARGS`; stdout as JSON when `--json` is among them.
fn run_bin(bin: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Result<Value> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(if args.contains(&"--json") {
        serde_json::from_slice(&out.stdout)?
    } else {
        Value::Null
    })
}

/// `load` at `rate` for `seconds` (with `extra` arguments), its CPU measured: its JSON, its wall
/// time, and each process's CPU seconds (pipedemo's from getrusage of the child, the services'
/// from /proc).
fn measured_load(
    bin: &std::path::Path,
    env: &[(&str, &str)],
    rate: u64,
    seconds: u64,
    extra: &[&str],
) -> Result<(Value, f64, BTreeMap<String, f64>)> {
    let before = children_cpu_secs();
    let tracker = CpuTracker::start();
    let started = Instant::now();
    let load = load_args(rate * seconds, rate);
    let args: Vec<&str> = load
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    let v = run_bin(bin, env, &args)?;
    let wall = started.elapsed().as_secs_f64();
    let mut secs: BTreeMap<String, f64> = tracker
        .stop()
        .into_iter()
        .map(|(s, x)| (s.name().to_owned(), x))
        .collect();
    secs.insert("pipedemo".into(), children_cpu_secs() - before);
    Ok((v, wall, secs))
}

/// The arguments of an open-loop `load` of `events` at `rate`, headless, with JSON.
fn load_args(events: u64, rate: u64) -> [String; 7] {
    [
        "load".into(),
        "--events".into(),
        events.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--json".into(),
        "--no-tui".into(),
    ]
}

/// One open-loop load: its JSON, and CPU µs per event of each process.
fn ab_load(
    a: &Args,
    bin: &std::path::Path,
    rate: u64,
    env: &[(&str, &str)],
) -> Result<(Value, BTreeMap<String, f64>)> {
    ab_setup(bin, env)?;
    let events = (rate * a.seconds) as f64;
    let (v, _, secs) = measured_load(bin, env, rate, a.seconds, &[])?;
    let mut us: BTreeMap<String, f64> = secs
        .into_iter()
        .map(|(k, x)| (k, x * 1e6 / events))
        .collect();
    let whole = us.values().sum();
    us.insert("pipeline".into(), whole);
    Ok((v, us))
}

/// The regression gate: each figure for this build and the baseline on the same stack,
/// interleaved A B A B, reported as new ÷ baseline with its spread; the capacity runs' spread;
/// idle Connect; the CPU cost per event of every process.
async fn regression(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let new_bin = a.pipedemo.clone();
    let old_bin = a.baseline.clone();
    let label = a.baseline_label.as_str();
    let env = [
        ("MONGODB_DATABASE", "bench_ab"),
        ("CONSUMER_GROUP", "bench-ab"),
        ("METRICS_FILE", "/tmp/pipedemo-bench-ab.jsonl"),
    ];
    // This build, then the baseline, in every round: A B A B.
    let bins: Vec<(&std::path::Path, bool)> = std::iter::once((new_bin.as_path(), true))
        .chain(old_bin.as_deref().map(|b| (b, false)))
        .collect();
    for &rate in &a.ab_rates {
        let mut new: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut old: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for round in 0..a.rounds {
            for &(bin, is_new) in &bins {
                eprintln!(
                    "bench: regression, {rate} ev/s for {} s, round {} of {}, {}",
                    a.seconds,
                    round + 1,
                    a.rounds,
                    if is_new { "this build" } else { label }
                );
                let (v, us) = ab_load(a, bin, rate, &env)?;
                let into = if is_new { &mut new } else { &mut old };
                let sched = &v["total_from_schedule"];
                for (k, name) in [
                    ("p50_ms", "p50"),
                    ("p95_ms", "p95"),
                    ("p99_ms", "p99"),
                    ("p999_ms", "p99.9"),
                ] {
                    into.entry(format!("{name} from schedule ms"))
                        .or_default()
                        .push(ms(sched, &[k]));
                }
                for (svc, x) in us {
                    into.entry(format!("CPU µs/event {svc}"))
                        .or_default()
                        .push(x);
                }
            }
        }
        for (k, vals) in new {
            let unit = if k.starts_with("CPU") {
                "µs/event"
            } else {
                "ms"
            };
            let mut f = ab_figure(
                &format!("regression {rate} ev/s: {}", k.trim_end_matches(" ms")),
                unit,
                vals,
                old.remove(&k).unwrap_or_default(),
                label,
            );
            match (rate, k.as_str()) {
                (4000, "CPU µs/event pipedemo") => f = at_most(f, 30.0),
                (4000, "CPU µs/event pipeline") => f = at_most(f, 150.0),
                (4000, "p99 from schedule ms") => {
                    f.target = "≤ 0.8× the baseline; goal ≤ 50 ms".into();
                    f.met = f.ratio.map(|r| r <= 0.8);
                }
                _ => {}
            }
            figs.push(f);
        }
    }

    // Capacity, run after run: does the answer reproduce?
    let mut new_caps = Vec::new();
    let mut old_caps = Vec::new();
    let step = format!("{}s", a.capacity_step);
    for run in 0..a.capacity_runs {
        for &(bin, is_new) in &bins {
            eprintln!(
                "bench: capacity run {} of {}, {}",
                run + 1,
                a.capacity_runs,
                if is_new { "this build" } else { label }
            );
            ab_setup(bin, &[])?;
            let v = run_bin(
                bin,
                &[],
                &["capacity", "--step", &step, "--json", "--no-tui"],
            )?;
            let cap = v["sustained_eps"].as_f64().unwrap_or(0.0);
            if is_new {
                new_caps.push(cap);
                figs.push(figure(
                    &format!(
                        "  capacity run {}: throughput ceiling (backlog flat)",
                        run + 1
                    ),
                    v["ceiling_eps"].as_f64().unwrap_or(f64::NAN),
                    "events/s",
                ));
                let last = figs.last_mut().expect("just pushed");
                last.target = format!(
                    "SLO capacity {cap:.0}; backlog grew at {}",
                    v["overflow_eps"]
                        .as_f64()
                        .map_or("no rate offered".into(), |r| format!("{r:.0}"))
                );
            } else {
                old_caps.push(cap);
            }
        }
    }
    let med = median(&new_caps);
    let lo = new_caps.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = new_caps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut f = ab_figure(
        &format!(
            "capacity at p99 ≤ 50 ms, {} runs, {} s steps",
            a.capacity_runs, a.capacity_step
        ),
        "events/s",
        new_caps,
        old_caps,
        label,
    );
    // Every run lies within ±within % of the runs' midpoint.
    let mid = (hi + lo) / 2.0;
    let within = if mid > 0.0 {
        (hi - lo) / 2.0 / mid * 100.0
    } else {
        f64::NAN
    };
    f.target = format!(
        "runs {lo:.0}–{hi:.0}: within ±{within:.0} % of their midpoint (goal ±15 %); median {med:.0}"
    );
    f.met = Some(within <= 15.0);
    figs.push(f);

    // Idle Connect: the cost of polling an empty WAL.
    ab_setup(&new_bin, &env)?;
    std::thread::sleep(Duration::from_secs(3));
    let t = CpuTracker::start();
    std::thread::sleep(Duration::from_secs(10));
    let idle = t.stop();
    figs.push(at_most(
        figure(
            "idle Connect (no events, 10 s)",
            idle.get(&Service::Connect).copied().unwrap_or(f64::NAN) * 10.0,
            "% of a core",
        ),
        5.0,
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            &a.settings.output.log_level,
        ))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let started = Instant::now();
    let mut figs = Vec::new();
    let mut resources: BTreeMap<String, Usage> = BTreeMap::new();

    let run = |section: &str| a.only.is_empty() || a.only.iter().any(|o| o == section);
    if run("regression") {
        eprintln!(
            "bench: regression gate against {} ({} rounds)",
            a.baseline
                .as_ref()
                .map_or("no baseline".into(), |_| a.baseline_label.clone()),
            a.rounds
        );
        regression(&a, &mut figs).await?;
    }
    if run("costs") {
        eprintln!("bench: costs per event per process, idle subtracted");
        costs::costs(&a, &mut figs).await?;
    }
    if run("generator") {
        eprintln!("bench: generator vs COPY (goal 3)");
        generator_vs_copy(&a, &mut figs).await?;
    }
    // Goal 4: each stage alone, in events/s.
    let mut alone: Vec<(&str, f64)> = Vec::new();
    if run("stages") {
        eprintln!("bench: CDC and Kafka alone (goal 4)");
        let (cdc, kafka_rate) = stages_alone(&a, &mut figs).await?;
        alone.push(("CDC", cdc));
        alone.push(("Kafka", kafka_rate));
    }
    if run("consumer") {
        eprintln!("bench: consumer alone vs raw bulk and the reference consumer (goals 3, 4)");
        let (consumer_rate, raw) = consumer_alone(&a, &mut figs).await?;
        alone.push(("consumer", consumer_rate));
        alone.push(("MongoDB bulk", raw));
    }
    let mut sustained = None;
    if run("capacity") {
        eprintln!(
            "bench: pipedemo capacity, {} s steps (goal 1)",
            a.capacity_step
        );
        sustained = capacity(&a, &mut figs)?;
    }
    if let (Some(cap), Some((name, slowest))) = (
        sustained,
        alone.iter().copied().min_by(|x, y| x.1.total_cmp(&y.1)),
    ) {
        let mut f = figure(
            "goal 4: capacity vs the slowest stage alone",
            cap,
            "events/s",
        );
        f.baseline = Some((format!("{name} alone"), slowest));
        f.ratio = Some(cap / slowest);
        f.target =
            "how much of the slowest stage's own limit the pipeline keeps at p99 ≤ 50 ms".into();
        figs.push(f);
    }
    if run("floor") {
        eprintln!("bench: latency floor at {} ev/s (goal 2)", a.floor_rate);
        let u = floor(&a, &mut figs)?;
        resources.insert(format!("floor {} ev/s", a.floor_rate), u);
    }

    let env = [
        ("MONGODB_DATABASE", "bench_e2e"),
        ("CONSUMER_GROUP", "bench-e2e"),
        ("METRICS_FILE", "/tmp/pipedemo-bench.jsonl"),
    ];
    eprintln!(
        "bench: open loop at {:?} events/s, {} s each",
        a.rates, a.seconds
    );
    for &rate in a.rates.iter().filter(|_| run("open-loop")) {
        let (v, u) = open_loop(&a, rate, a.seconds, &env)?;
        latency_figures(&mut figs, &format!("{rate} ev/s"), &v, rate == 500);
        resources.insert(format!("open loop {rate} ev/s"), u);
    }
    if run("burst") {
        eprintln!("bench: burst of {}", a.burst);
        let (v, u) = burst(&a, &env)?;
        let drain = ms(&v, &["duration_secs"]) - ms(&v, &["insert_secs"]);
        figs.push(at_most(
            figure("burst: last outbox commit → last MongoDB write", drain, "s"),
            3.0,
        ));
        figs.push(at_least(
            figure(
                "burst: sustained end to end",
                ms(&v, &["throughput_eps"]),
                "events/s",
            ),
            5000.0,
        ));
        resources.insert("burst".into(), u);
    }
    for (k, u) in &resources {
        figs.push(at_most(
            figure(&format!("pipedemo RSS, {k}"), u.max_rss_mb, "MB"),
            100.0,
        ));
        figs.push(figure(
            &format!("pipedemo CPU, {k}"),
            u.cpu_percent,
            "% of a core",
        ));
    }

    if run("scale-out") {
        eprintln!("bench: scale-out with 1 and 2 consumers on 4 partitions");
        scale_out(&a, &mut figs).await?;
    }
    if run("defaults") {
        debezium_defaults(&a, &env, &mut figs)?;
    }
    if run("routing") {
        routing_modes(&a, &mut figs)?;
    }
    // What the tests no longer judge by the clock (see clocks.rs).
    if run("hosts") {
        eprintln!("bench: one run from 1, 2 and 3 simulated hosts at 600 ev/s, interleaved");
        hosts::hosts(&a, &mut figs)?;
    }
    if run("publishing") {
        eprintln!("bench: a consumer's CPU per event with and without publishing its results");
        hosts::publishing(&a, &mut figs)?;
    }
    if run("soak") {
        eprintln!("bench: soak at 400 ev/s on four partitions, 45 s");
        clocks::soak(&a, &mut figs)?;
    }
    if run("show") {
        eprintln!("bench: full against the seed's targets, and a short capacity sweep");
        clocks::show(&a, &mut figs)?;
    }
    if run("chaos") {
        eprintln!("bench: every local fault at 150 ev/s (stops and starts the services)");
        clocks::chaos(&a, &mut figs)?;
    }

    // The table.
    println!(
        "\n{:<58} {:>12} {:<12} {:>8}  target / baseline",
        "figure", "value", "unit", "ratio"
    );
    for f in &figs {
        let mark = match f.met {
            Some(true) => "✓",
            Some(false) => "✗",
            None => " ",
        };
        let base = f
            .baseline
            .as_ref()
            .map_or(String::new(), |(n, v)| format!(" (baseline {n}: {v:.0})"));
        let spread = f.spread.map_or(String::new(), |(lo, hi)| {
            format!(" (spread {lo:.2}–{hi:.2}×)")
        });
        println!(
            "{:<58} {:>12.1} {:<12} {:>8} {mark} {}{base}{spread}",
            f.name,
            f.value,
            f.unit,
            f.ratio.map_or(String::new(), |r| format!("{r:.2}×")),
            f.target
        );
    }
    println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &a.out,
        serde_json::to_string_pretty(&serde_json::json!({
            "generated_at": chrono::Utc::now().to_rfc3339(),
            "machine_cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "seconds": started.elapsed().as_secs_f64(),
            "figures": figs,
            "resources": resources,
        }))?,
    )?;
    println!("results written to {}", a.out.display());
    Ok(())
}
