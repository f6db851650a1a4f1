//! The effects part of `cargo xtask bench`, against the node(s) the bench started:
//!
//! - **call round trips through reply routes**: the transfer saga (`examples/transfer`), each
//!   transfer two calls with replies (withdraw → `debited`, deposit → `credited`) across entities
//!   on (mostly) different partitions. Throughput: all transfers started at once by the clients,
//!   done when the nodes' `cella_effects_delivered_total` grew by two per transfer; latency:
//!   again, each client starting one transfer and polling it (`get`) until `completed`;
//! - **timers**: `tck-value` schedules one timer per key, all due at one instant a few seconds
//!   ahead; how long after that instant the last fired (`cella_timers_fired_total`), and the
//!   nodes' `cella_timer_lag_seconds` histogram over them.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{build, http::request, workspace_root};

/// The sizes of the effects part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Transfers per run.
    pub transfers: u32,
    /// Timers scheduled, one per key.
    pub timers: u32,
    /// Concurrent clients.
    pub clients: u32,
}

/// Accounts the transfers move money between, and what each is funded with.
const ACCOUNTS: u32 = 1000;
const FUNDS: u64 = 1_000_000_000;
/// How far ahead the timers are due.
const TIMER_LEAD: Duration = Duration::from_secs(3);
/// How often the latency run polls a transfer.
const POLL: Duration = Duration::from_millis(5);

pub(crate) async fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        cella_client::send(&crate::http::url(addr), method.parse()?, path, body, None),
    )
    .await
    .with_context(|| format!("{path} on {addr}: no reply within 60 s"))??;
    Ok((reply.status, reply.body))
}

/// POSTs a JSON command and wants a 200 with a JSON reply.
async fn command(addr: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let (status, reply) = send(addr, "POST", path, body.to_string().into_bytes()).await?;
    if status != 200 {
        bail!("{path}: {status} {reply}");
    }
    Ok(serde_json::from_str(&reply).unwrap_or(Value::Null))
}

/// Runs `job(i)` for i in 0..n on `clients` concurrent tasks; the first error wins.
pub(crate) async fn for_each<F, Fut>(n: u32, clients: u32, job: F) -> anyhow::Result<()>
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU32::new(0));
    let job = Arc::new(job);
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, job) = (next.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                job(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// [`metrics`], from a thread outside the runtime.
fn metrics_blocking(addrs: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut sum = BTreeMap::new();
    for a in addrs {
        let (status, body) = request(a, "GET", "/metrics", b"")?;
        add_metrics(&mut sum, a, status, &body)?;
    }
    Ok(sum)
}

/// Adds one node's `/metrics` answer to `sum`, by series.
fn add_metrics(
    sum: &mut BTreeMap<String, f64>,
    addr: &str,
    status: u16,
    body: &str,
) -> anyhow::Result<()> {
    if status != 200 {
        bail!("/metrics on {addr}: {status}");
    }
    for (series, value) in parse_metrics(body) {
        *sum.entry(series).or_insert(0.0) += value;
    }
    Ok(())
}

/// The metrics of all nodes, summed by series (name and labels).
pub(crate) async fn metrics(addrs: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut sum = BTreeMap::new();
    for a in addrs {
        let (status, body) = send(a, "GET", "/metrics", Vec::new()).await?;
        add_metrics(&mut sum, a, status, &body)?;
    }
    Ok(sum)
}

/// `series value` lines of an OpenMetrics text (comments skipped).
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// The cumulative buckets `(le, count)` of histogram `name`, `after` minus `before`, by `le`.
fn buckets(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    name: &str,
) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(series, n)| {
            let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n - get(before, series)))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket where quantile `q` falls (cumulative buckets).
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

pub(crate) fn deploy(addr: &str, name: &str, file: &str) -> anyhow::Result<()> {
    let path = build::target_dir(&workspace_root())
        .join("components")
        .join(file);
    let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let (status, body) = request(addr, "PUT", &format!("/v1/modules/{name}"), &wasm)?;
    if status >= 300 {
        bail!("deploy of {name} failed: {status} {body}");
    }
    Ok(())
}

fn transfer_start(i: u32, prefix: &str) -> (String, Value) {
    let from = i % ACCOUNTS;
    let to = (i + ACCOUNTS / 2 + 1) % ACCOUNTS;
    (
        format!("/v1/entities/transfer/{prefix}{i}/start"),
        json!({"from": format!("a{from}"), "to": format!("a{to}"), "amount": 1}),
    )
}

struct Transfers {
    throughput_secs: f64,
    latencies: Vec<Duration>,
    not_completed: u32,
}

async fn transfers(addrs: Arc<Vec<String>>, opts: Options) -> anyhow::Result<Transfers> {
    let n = opts.transfers;
    let nodes = addrs.to_vec();
    let at = move |i: u32| addrs[i as usize % addrs.len()].clone();
    // Fund the accounts.
    let a = at.clone();
    for_each(ACCOUNTS, opts.clients, move |i| {
        let addr = a(i);
        async move {
            let path = format!("/v1/entities/account/a{i}/deposit");
            command(&addr, &path, &json!({"amount": FUNDS}))
                .await
                .map(|_| ())
        }
    })
    .await?;
    // Throughput: start them all, then wait for 2 delivered calls per transfer.
    let base = metrics(&nodes).await?;
    let delivered0 = get(&base, "cella_effects_delivered_total");
    let started = Instant::now();
    let a = at.clone();
    for_each(n, opts.clients, move |i| {
        let addr = a(i);
        async move {
            let (path, body) = transfer_start(i, "t");
            command(&addr, &path, &body).await.map(|_| ())
        }
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let nodes2 = nodes.clone();
    let throughput_secs = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        loop {
            let m = metrics_blocking(&nodes2)?;
            if get(&m, "cella_effects_delivered_total") - delivered0 >= 2.0 * f64::from(n) {
                return Ok(started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                bail!("the transfers' calls were not all delivered within 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await??;
    // Every transfer completed?
    let not_completed = Arc::new(AtomicU32::new(0));
    let (a, nc) = (at.clone(), not_completed.clone());
    for_each(n, opts.clients, move |i| {
        let (addr, nc) = (a(i), nc.clone());
        async move {
            let r = command(
                &addr,
                &format!("/v1/entities/transfer/t{i}/get"),
                &Value::Null,
            )
            .await?;
            if r["status"] != "completed" {
                nc.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await?;
    // Latency: each client starts one transfer and polls it until it is done.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (a, lat, nc) = (at.clone(), latencies.clone(), not_completed.clone());
    for_each(n, opts.clients, move |i| {
        let (addr, lat, nc) = (a(i), lat.clone(), nc.clone());
        async move {
            let (path, body) = transfer_start(i, "l");
            let t0 = Instant::now();
            command(&addr, &path, &body).await?;
            let get = format!("/v1/entities/transfer/l{i}/get");
            loop {
                tokio::time::sleep(POLL).await;
                let r = command(&addr, &get, &Value::Null).await?;
                match r["status"].as_str() {
                    Some("completed") => {
                        if let Ok(mut l) = lat.lock() {
                            l.push(t0.elapsed());
                        }
                        return Ok(());
                    }
                    Some("debiting" | "crediting") if t0.elapsed() < Duration::from_secs(60) => {}
                    _ => {
                        nc.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
        }
    })
    .await?;
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    // Money is neither made nor lost.
    let total = Arc::new(AtomicU64::new(0));
    let (a, t) = (at.clone(), total.clone());
    for_each(ACCOUNTS, opts.clients, move |i| {
        let (addr, t) = (a(i), t.clone());
        async move {
            let r = command(
                &addr,
                &format!("/v1/entities/account/a{i}/get"),
                &Value::Null,
            )
            .await?;
            let balance = r["balance"].as_u64().or_else(|| r.as_u64()).unwrap_or(0);
            t.fetch_add(balance, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    let total = total.load(Ordering::Relaxed);
    if total != u64::from(ACCOUNTS) * FUNDS {
        bail!(
            "the accounts hold {total} in all, not {}",
            u64::from(ACCOUNTS) * FUNDS
        );
    }
    Ok(Transfers {
        throughput_secs,
        latencies,
        not_completed: not_completed.load(Ordering::Relaxed),
    })
}

struct Timers {
    send_secs: f64,
    late: u32,
    last_after_ms: f64,
    fired: f64,
    lag: Vec<(f64, f64)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn timers(addrs: Arc<Vec<String>>, opts: Options) -> anyhow::Result<Timers> {
    let n = opts.timers;
    let nodes = addrs.to_vec();
    let before = metrics(&nodes).await?;
    let fired0 = get(&before, "cella_timers_fired_total");
    let due = now_ms() + TIMER_LEAD.as_millis() as u64;
    let late = Arc::new(AtomicU32::new(0));
    let sent = Instant::now();
    let (a, l) = (addrs.clone(), late.clone());
    for_each(n, opts.clients, move |i| {
        let (addr, l) = (a[i as usize % a.len()].clone(), l.clone());
        async move {
            let delay = due.saturating_sub(now_ms());
            if delay == 0 {
                l.fetch_add(1, Ordering::Relaxed);
            }
            let body = json!({"actions": [{"schedule": {"name": "t", "delayMs": delay,
                "command": "process", "payload": {"actions": [{"append": "x"}]}}}]});
            command(
                &addr,
                &format!("/v1/entities/tck-value/tm{i}/process"),
                &body,
            )
            .await
            .map(|_| ())
        }
    })
    .await?;
    let send_secs = sent.elapsed().as_secs_f64();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + TIMER_LEAD + Duration::from_secs(120);
        loop {
            let m = metrics_blocking(&nodes)?;
            let fired = get(&m, "cella_timers_fired_total") - fired0;
            if fired >= f64::from(n) {
                let last_after_ms = now_ms() as f64 - due as f64;
                return Ok(Timers {
                    send_secs,
                    late: late.load(Ordering::Relaxed),
                    last_after_ms,
                    fired,
                    lag: buckets(&before, &m, "cella_timer_lag_seconds"),
                });
            }
            if Instant::now() > deadline {
                bail!("{fired} of {n} timers fired within 120 s of their due time");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await?
}

fn secs_label(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.is_infinite() => "> 1.024 s".into(),
        Some(s) => format!("≤ {:.1} ms", s * 1000.0),
    }
}

/// Runs the effects part against `addrs` (deploying `account`, `transfer` and `tck-value`);
/// `client_rps` is the best plain client commands/s of the wrk part, if it ran.
pub fn run(addrs: &[String], opts: Options, client_rps: Option<f64>) -> anyhow::Result<()> {
    deploy(&addrs[0], "account", "account.wasm")?;
    deploy(&addrs[0], "transfer", "transfer.wasm")?;
    deploy(&addrs[0], "tck-value", "tck-value.wasm")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the effects part")?;
    let shared = Arc::new(addrs.to_vec());
    eprintln!(
        "effects: {} transfers, {} clients",
        opts.transfers, opts.clients
    );
    let t = runtime.block_on(transfers(shared.clone(), opts))?;
    eprintln!("effects: {} timers", opts.timers);
    let tm = runtime.block_on(timers(shared, opts))?;

    let tps = f64::from(opts.transfers) / t.throughput_secs;
    let rts = 2.0 * tps;
    println!(
        "\n| transfers | clients | transfers/s | round trips/s | p50 ms | p99 ms | not completed | client cmd/s | round trips/s ÷ (cmd/s ÷ 2) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {tps:.0} | {rts:.0} | {:.1} | {:.1} | {} | {} | {} |",
        opts.transfers,
        opts.clients,
        percentile(&t.latencies, 0.50),
        percentile(&t.latencies, 0.99),
        t.not_completed,
        client_rps.map_or("-".into(), |r| format!("{r:.0}")),
        client_rps.map_or("-".into(), |r| format!("{:.2}", rts / (r / 2.0))),
    );
    println!(
        "\nTransfers/s: all started at once by the clients, until the nodes' \
         cella_effects_delivered_total grew by 2 per transfer (a round trip: a call and its \
         reply-route command). p50/p99: a second run, each client starting one transfer and \
         polling `get` every {} ms until `completed`. Client cmd/s: the best 1,000-key cell of \
         the wrk part; ≥ 1 in the last column means a round trip costs no more than two client \
         commands.",
        POLL.as_millis()
    );
    let count = tm.lag.last().map_or(0.0, |b| b.1);
    println!(
        "\n| timers | due in | scheduled in s | sent late | fired | last fired after due, ms | lag p50 | lag p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} s | {:.2} | {} | {:.0} | {:.0} | {} | {} |",
        opts.timers,
        TIMER_LEAD.as_secs(),
        tm.send_secs,
        tm.late,
        tm.fired,
        tm.last_after_ms,
        secs_label(quantile(&tm.lag, 0.50)),
        secs_label(quantile(&tm.lag, 0.99)),
    );
    println!(
        "\nOne timer per key, all due at one instant; last fired: when the nodes' \
         cella_timers_fired_total reached the count (polled every 5 ms). Lag: \
         cella_timer_lag_seconds over these {count:.0} firings (due time to the command's start), \
         the upper bound of the bucket holding the quantile."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_from_openmetrics() {
        let before = parse_metrics(
            "# TYPE x histogram\nx_bucket{le=\"0.001\"} 1\nx_bucket{le=\"0.002\"} 1\nx_bucket{le=\"+Inf\"} 1\n",
        )
        .into_iter()
        .collect();
        let after = parse_metrics(
            "x_bucket{le=\"0.001\"} 51\nx_bucket{le=\"0.002\"} 100\nx_bucket{le=\"+Inf\"} 101\nx_count 101\n",
        )
        .into_iter()
        .collect();
        let b = buckets(&before, &after, "x");
        assert_eq!(
            b,
            vec![(0.001, 50.0), (0.002, 99.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        assert_eq!(quantile(&b, 0.99), Some(0.002));
        assert_eq!(quantile(&b, 1.0), Some(f64::INFINITY));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(get(&after, "x_count"), 101.0);
    }
}
