//! The topics part of `cargo xtask bench`, against the node(s) the bench started, with the
//! Rust `tck-value` deployed (it subscribes to `tck-news` by the message's `/to` pointer, and
//! its `on-message` appends `tck-news@<offset>:<text>;` to the entity's value):
//!
//! - **fan-out**: one message addressed to `--fanout` entities (`to` = that many keys), timed
//!   from just before the publish until the nodes' `cella_topic_deliveries_total` for
//!   `tck-value` grew by that many (every entity processed it), `--rounds` times, one at a time;
//! - **publish → SSE**: a follower connected (`GET /v1/topics/{topic}/events`) before anything
//!   is published; messages published one at a time, each timed on the client from just before
//!   its `POST` until its event arrived on the stream;
//! - **sustained publications**: wrk with `--clients` connections (split over the nodes) posting
//!   to one topic without subscribers for `--secs` seconds; publications/s, p50/p99, and a check
//!   that the topic grew by the acknowledged publications (plus at most the connections).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{
    bench_effects::{deploy, metrics, percentile, send},
    sse,
};

/// The sizes of the topics part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Entities one fan-out message is addressed to.
    pub fanout: u32,
    /// Fan-out messages timed (and SSE messages: four times as many).
    pub rounds: u32,
    /// wrk connections of the sustained run (split over the nodes).
    pub publishers: u32,
    /// Seconds of the sustained run.
    pub secs: u32,
}

/// The topic `tck-value` subscribes to.
const NEWS: &str = "tck-news";
/// The topic of the SSE latency run and of the sustained run (no subscribers).
const SSE_TOPIC: &str = "bench-sse";
const LOAD_TOPIC: &str = "bench-load";
/// Fan-out rounds run first and not timed (entities created, module and consumer warm).
const WARMUP_ROUNDS: u32 = 3;
/// How long one fan-out or one SSE message may take before the run fails.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// The wrk script of the sustained run: the same small JSON message on every request.
const PUBLISH_LUA: &str = r#"
wrk.method = "POST"
wrk.body = '{"n":1}'
wrk.headers["Content-Type"] = "application/json"
function request()
  return wrk.format(nil, os.getenv("TOPIC_PATH"))
end
function done(s, lat, req)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    lat:percentile(50), lat:percentile(99)))
end
"#;

/// Publishes `message` to `topic` through `addr`; its offset.
async fn publish(addr: &str, topic: &str, message: &Value) -> anyhow::Result<u64> {
    let path = format!("/v1/topics/{topic}");
    let (status, body) = send(addr, "POST", &path, message.to_string().into_bytes()).await?;
    if status != 200 {
        bail!("POST {path} on {addr}: {status} {body}");
    }
    let reply: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    reply["offset"]
        .as_u64()
        .with_context(|| format!("POST {path} answered {body}"))
}

/// The nodes' `series` summed over every series of `name` whose labels include all `labels`.
async fn counter(addrs: &[String], name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let m = metrics(addrs).await?;
    let prefix = format!("{name}{{");
    Ok(m.iter()
        .filter(|(series, _)| {
            series.starts_with(&prefix)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum())
}

/// Deliveries of `tck-news` to `tck-value` that succeeded, over the nodes.
async fn news_deliveries(addrs: &[String]) -> anyhow::Result<f64> {
    counter(
        addrs,
        "cella_topic_deliveries_total",
        &[
            ("topic", NEWS),
            ("subscriber", "tck-value"),
            ("outcome", "ok"),
        ],
    )
    .await
}

struct Fanout {
    latencies: Vec<Duration>,
    /// Entities whose value does not hold exactly one mark per round (must be 0).
    incomplete: u32,
}

/// The fan-out run: `rounds` messages (after the warm-up) to `fanout` keys, one at a time.
async fn fanout(addrs: &[String], opts: Options) -> anyhow::Result<Fanout> {
    let keys: Vec<String> = (0..opts.fanout).map(|k| format!("fan{k}")).collect();
    let mut latencies = Vec::new();
    let total = WARMUP_ROUNDS + opts.rounds;
    for round in 0..total {
        let addr = &addrs[round as usize % addrs.len()];
        let before = news_deliveries(addrs).await?;
        let message = json!({"to": keys, "text": format!("r{round}")});
        let t0 = Instant::now();
        publish(addr, NEWS, &message).await?;
        loop {
            let delivered = news_deliveries(addrs).await? - before;
            if delivered >= f64::from(opts.fanout) {
                break;
            }
            if t0.elapsed() > ROUND_LIMIT {
                bail!(
                    "fan-out round {round}: {delivered} of {} deliveries within {ROUND_LIMIT:?}",
                    opts.fanout
                );
            }
        }
        if round >= WARMUP_ROUNDS {
            latencies.push(t0.elapsed());
        }
    }
    latencies.sort();
    // Every entity processed every round exactly once.
    let mut incomplete = 0;
    for (i, key) in keys.iter().enumerate() {
        let addr = &addrs[i % addrs.len()];
        let (status, body) = send(
            addr,
            "GET",
            &format!("/v1/entities/tck-value/{key}"),
            Vec::new(),
        )
        .await?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let value = v["state"]["value"].as_str().unwrap_or("");
        if status != 200 || value.matches(';').count() != total as usize {
            incomplete += 1;
        }
    }
    Ok(Fanout {
        latencies,
        incomplete,
    })
}

/// The publish → SSE run: `n` messages published one at a time through the nodes in turn, a
/// follower on `addrs[0]`.
async fn sse_latency(addrs: &[String], n: u32) -> anyhow::Result<Vec<Duration>> {
    let (mut events, reader) = sse::follow(&addrs[0], SSE_TOPIC, 0).await?;
    let mut latencies = Vec::new();
    for i in 0..n {
        let addr = &addrs[i as usize % addrs.len()];
        let t0 = Instant::now();
        let offset = publish(addr, SSE_TOPIC, &json!({"n": i})).await?;
        loop {
            let next = tokio::time::timeout_at(
                tokio::time::Instant::from_std(t0 + ROUND_LIMIT),
                events.recv(),
            )
            .await;
            match next {
                Ok(Some(e)) if e.id == offset => {
                    latencies.push(e.at - t0);
                    break;
                }
                Ok(Some(e)) if e.id < offset => {}
                Ok(Some(e)) => bail!("the stream skipped from before {offset} to {}", e.id),
                Ok(None) => bail!("the event stream ended"),
                Err(_) => bail!("message {offset} did not arrive within {ROUND_LIMIT:?}"),
            }
        }
    }
    reader.abort();
    latencies.sort();
    Ok(latencies)
}

struct Sustained {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    ok: u64,
    /// Messages the topic grew by.
    grew: u64,
    conns: u32,
    /// The nodes' CPU time per acknowledged publication, in µs.
    cpu_us: Option<f64>,
}

/// One wrk per node at once (`conns` split evenly, at least one each) posting to the load topic
/// for `secs`; the merged result (counts added up, percentiles the worst).
fn wrk_publish(addrs: &[String], script: &Path, conns: u32, secs: u32) -> anyhow::Result<Value> {
    let per = (conns / addrs.len() as u32).max(1);
    let results: Vec<anyhow::Result<Value>> = std::thread::scope(|scope| {
        let runs: Vec<_> = addrs
            .iter()
            .map(|a| scope.spawn(move || run_wrk(a, script, per, secs)))
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("wrk thread panicked")))
            })
            .collect()
    });
    let mut merged = serde_json::Map::new();
    for r in results {
        for (k, v) in r?.as_object().into_iter().flatten() {
            let v = v.as_u64().unwrap_or(0);
            let old = merged.get(k).and_then(Value::as_u64).unwrap_or(0);
            let new = match k.as_str() {
                "p50_us" | "p99_us" | "duration_us" => old.max(v),
                _ => old + v,
            };
            merged.insert(k.clone(), json!(new));
        }
    }
    Ok(Value::Object(merged))
}

fn run_wrk(addr: &str, script: &Path, conns: u32, secs: u32) -> anyhow::Result<Value> {
    let mut cmd = crate::wrk::wrk(addr, script, conns, secs);
    cmd.env("TOPIC_PATH", format!("/v1/topics/{LOAD_TOPIC}"));
    crate::wrk::wrk_result(cmd)
}

/// Publications of the load topic counted by the nodes, once they stopped changing (requests
/// wrk left in flight are done).
async fn settled_publications(addrs: &[String]) -> anyhow::Result<f64> {
    let name = "cella_topic_publications_total";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = counter(addrs, name, &[("topic", LOAD_TOPIC)]).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counter(addrs, name, &[("topic", LOAD_TOPIC)]).await?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The sustained run, after a 2 s warm-up with the same connections.
fn sustained(
    runtime: &tokio::runtime::Runtime,
    addrs: &[String],
    script: &Path,
    opts: Options,
    cpu_micros: &dyn Fn() -> u64,
) -> anyhow::Result<Sustained> {
    let conns = (opts.publishers / addrs.len() as u32).max(1) * addrs.len() as u32;
    wrk_publish(addrs, script, conns, 2)?;
    let first = runtime.block_on(async {
        settled_publications(addrs).await?;
        publish(&addrs[0], LOAD_TOPIC, &json!({"mark": "before"})).await
    })?;
    let cpu_before = cpu_micros();
    let r = wrk_publish(addrs, script, conns, opts.secs)?;
    let cpu = cpu_micros().saturating_sub(cpu_before);
    let last = runtime.block_on(async {
        settled_publications(addrs).await?;
        publish(&addrs[0], LOAD_TOPIC, &json!({"mark": "after"})).await
    })?;
    let get = |k: &str| r[k].as_u64().unwrap_or(0);
    let errors = get("err_status")
        + get("err_connect")
        + get("err_read")
        + get("err_write")
        + get("err_timeout");
    let ok = get("requests") - get("err_status");
    Ok(Sustained {
        rps: ok as f64 / (get("duration_us") as f64 / 1e6),
        p50_ms: get("p50_us") as f64 / 1000.0,
        p99_ms: get("p99_us") as f64 / 1000.0,
        errors,
        ok,
        grew: last - first - 1,
        conns,
        cpu_us: (ok > 0 && cpu > 0).then(|| cpu as f64 / ok as f64),
    })
}

/// Runs the topics part against `addrs`; `cpu_micros` tells the CPU time the nodes used so far.
pub fn run(addrs: &[String], opts: Options, cpu_micros: &dyn Fn() -> u64) -> anyhow::Result<()> {
    deploy(&addrs[0], "tck-value", "tck-value.wasm")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the topics part")?;
    eprintln!(
        "topics: fan-out to {} entities, {} rounds",
        opts.fanout, opts.rounds
    );
    let f = runtime.block_on(fanout(addrs, opts))?;
    let sse_n = opts.rounds * 4;
    eprintln!("topics: publish → SSE, {sse_n} messages");
    let s = runtime.block_on(sse_latency(addrs, sse_n))?;
    eprintln!(
        "topics: sustained publications, {} connections, {} s",
        opts.publishers, opts.secs
    );
    let tmp = std::env::temp_dir().join(format!("cella-bench-topics-{}.lua", std::process::id()));
    std::fs::write(&tmp, PUBLISH_LUA)?;
    let load = sustained(&runtime, addrs, &tmp, opts, cpu_micros);
    let _ = std::fs::remove_file(&tmp);
    let load = load?;

    let nodes = if addrs.len() > 1 {
        format!("{} nodes", addrs.len())
    } else {
        "1 node".to_string()
    };
    println!("\n| topics ({nodes}) | n | p50 ms | p99 ms | check |");
    println!("|---|---|---|---|---|");
    println!(
        "| fan-out: 1 message → {} entities, all processed | {} | {:.1} | {:.1} | {} |",
        opts.fanout,
        f.latencies.len(),
        percentile(&f.latencies, 0.50),
        percentile(&f.latencies, 0.99),
        if f.incomplete == 0 {
            "ok".to_string()
        } else {
            format!("{} entities INCOMPLETE", f.incomplete)
        }
    );
    println!(
        "| publish → SSE event | {} | {:.2} | {:.2} | ok |",
        s.len(),
        percentile(&s, 0.50),
        percentile(&s, 0.99)
    );
    let extra = load.grew as i64 - load.ok as i64;
    let check = if extra >= 0 && extra <= i64::from(load.conns) {
        "ok"
    } else {
        "MISMATCH"
    };
    println!(
        "\n| sustained ({nodes}) | conns | publications/s | p50 ms | p99 ms | errors | 2xx | topic grew | check | CPU µs/publication |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} s to one topic | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {check} | {} |",
        opts.secs,
        load.conns,
        load.rps,
        load.p50_ms,
        load.p99_ms,
        load.errors,
        load.ok,
        load.grew,
        load.cpu_us.map_or("-".to_string(), |c| format!("{c:.0}"))
    );
    println!(
        "\nFan-out: from just before the POST until the nodes' cella_topic_deliveries_total \
         (tck-news → tck-value, ok) grew by {} (polled back to back), {WARMUP_ROUNDS} warm-up \
         rounds first; check: every entity holds one mark per round. Publish → SSE: one follower \
         on the first node, messages published one at a time through the nodes in turn, client \
         clock from before the POST to the event's arrival. Sustained: wrk -t1 per node, \
         connections split evenly, POST /v1/topics/{LOAD_TOPIC} (no subscribers), durable; \
         check: the topic grew by the 2xx plus at most the connections; CPU: the nodes' user + \
         system time per 2xx.",
        opts.fanout
    );
    if f.incomplete > 0 || check != "ok" {
        bail!("the topics part's check failed");
    }
    Ok(())
}
