//! The languages part of `cargo xtask bench`: the durable counter `cella new` scaffolds in each
//! guest language (Rust, Python, JavaScript), side by side on the one node the bench started, so
//! changes to how the runtime executes instances can be compared across languages.
//!
//! - **Preparation** (before the node starts): the Python and JavaScript toolchains
//!   ([`toolchains::ensure_guests`]); then per language, with the benchmarked `cella` and a
//!   `CELLA_HOME` of its own in the bench's temporary directory, `cella new counter-<lang>
//!   --lang <lang>`, then `cella build` twice, timed: the first build (for Rust, its
//!   dependencies compile too) and a rebuild after the entity's source was touched. A
//!   JavaScript project first gets `npm install` (the scaffold's first step; it links the SDK),
//!   and its SDK copy's build tools are the JavaScript SDK's installed ones
//!   (`sdk-guest/js/node_modules`, pinned by the same `package-lock.json`), not a second `npm
//!   ci`.
//! - **Deploys**: each component `PUT` to `/v1/modules/counter-<lang>`, timed (the node
//!   validates and compiles it before it answers).
//! - **Load**, per language: every key touched (`add 0`) and a 2 s wrk warm-up, then wrk at 64
//!   connections over 1,000 keys and on one hot key, `--secs` each, with the counter part's
//!   script (`POST /v1/entities/counter-<lang>/{key}/add`, body `1`): req/s (2xx), p50/p99, the
//!   node's CPU µs per 2xx, the ratio to Rust's req/s for the same workload, and the check of
//!   the counter part: the counters' `get` summed before and after must have grown by the 2xx
//!   replies plus at most the connections, with no non-2xx reply.
//! - **Memory**: the node's `VmRSS` after startup, before and after the deploys, after each
//!   cell, and its peak (`VmHWM`) at the end.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{bench::run_wrk_path, http::request, tck::Lang, toolchains, workspace_root};

/// The sizes of the languages part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The languages, each once, in [`Lang::ALL`]'s order.
    pub langs: Vec<Lang>,
    /// Seconds per wrk cell.
    pub secs: u32,
}

/// wrk connections of every cell.
const CONNS: u32 = 64;
/// Keys of the spread workload (`k0`…`k999`); the hot key is `khot`.
const KEYS: u32 = 1000;
/// Requests in flight while the keys are touched or read.
const IN_FLIGHT: usize = 16;

/// The entity type (and project name) of a language's counter.
fn entity_type(lang: Lang) -> String {
    format!("counter-{}", lang.name())
}

/// The file of a scaffold that holds the entity.
fn entity_source(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "src/index.js",
    }
}

/// A counter scaffolded and built.
pub struct Built {
    lang: Lang,
    wasm: PathBuf,
    size: u64,
    build_secs: f64,
    rebuild_secs: f64,
}

/// What [`prepare`] made, for [`run`].
pub struct Prepared {
    built: Vec<Built>,
}

/// The component path `cella build` reports on its first line (`built <path>`).
fn built_path(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .map(|p| PathBuf::from(p.trim()))
}

/// Runs `command` (a `cella` subcommand), its output kept; fails with its last lines.
fn run_cella(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = toolchains::configure(command)
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Points the SDK copy's JavaScript build tools under `home` at the JavaScript SDK's installed
/// ones, so `cella build` does not install them a second time.
fn link_js_tools(home: &Path) -> anyhow::Result<()> {
    let installed = workspace_root().join("sdk-guest/js/node_modules");
    let sdk = home.join("sdk");
    for entry in std::fs::read_dir(&sdk).with_context(|| format!("reading {}", sdk.display()))? {
        let toolchain = entry?.path().join("js/toolchain");
        let link = toolchain.join("node_modules");
        if toolchain.is_dir() && !link.exists() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(&installed, &link).with_context(|| {
                format!("linking {} to {}", link.display(), installed.display())
            })?;
            #[cfg(not(unix))]
            bail!(
                "the languages part links {} to {}: Unix only",
                link.display(),
                installed.display()
            );
        }
    }
    Ok(())
}

/// Marks the entity's source as changed now, so the next build rebuilds it.
fn touch(path: &Path) -> anyhow::Result<()> {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("touching {}", path.display()))
}

/// Runs `cella build` in `dir`; the component and the wall time.
fn build(bin: &Path, home: &Path, dir: &Path, lang: Lang) -> anyhow::Result<(PathBuf, f64)> {
    let started = Instant::now();
    let stdout = run_cella(
        Command::new(bin)
            .arg("build")
            .current_dir(dir)
            .env("CELLA_HOME", home),
        &format!("`cella build` of the {lang} counter in {}", dir.display()),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let wasm = built_path(&stdout)
        .with_context(|| format!("`cella build` named no component:\n{stdout}"))?;
    Ok((dir.join(wasm), secs))
}

/// Scaffolds and builds the counter of every language of `opts` with `bin` under `tmp`.
pub fn prepare(bin: &Path, tmp: &Path, opts: &Options) -> anyhow::Result<Prepared> {
    toolchains::ensure_guests(&opts.langs)?;
    let home = tmp.join("cella-home");
    let projects = tmp.join("langs");
    std::fs::create_dir_all(&projects)
        .with_context(|| format!("creating {}", projects.display()))?;
    let mut built = Vec::new();
    for &lang in &opts.langs {
        let name = entity_type(lang);
        let dir = projects.join(&name);
        eprintln!("languages: cella new {name} --lang {lang}, then cella build (twice)");
        run_cella(
            Command::new(bin)
                .args(["new", &name, "--lang", lang.name()])
                .current_dir(&projects)
                .env("CELLA_HOME", &home),
            &format!("`cella new {name} --lang {lang}`"),
        )?;
        if lang == Lang::Js {
            link_js_tools(&home)?;
            // Its report to stderr: stdout is the bench's tables.
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .stdout(std::io::stderr())
                .status()
                .context("cannot run npm")?;
            if !status.success() {
                bail!("npm install in {} failed ({status})", dir.display());
            }
        }
        let (wasm, build_secs) = build(bin, &home, &dir, lang)?;
        touch(&dir.join(entity_source(lang)))?;
        let (wasm_again, rebuild_secs) = build(bin, &home, &dir, lang)?;
        if wasm_again != wasm {
            bail!(
                "the rebuild wrote {} (not {})",
                wasm_again.display(),
                wasm.display()
            );
        }
        let size = std::fs::metadata(&wasm)
            .with_context(|| format!("reading {}", wasm.display()))?
            .len();
        eprintln!(
            "languages: {lang}: {size} bytes, built in {build_secs:.1} s, rebuilt in \
             {rebuild_secs:.1} s"
        );
        built.push(Built {
            lang,
            wasm,
            size,
            build_secs,
            rebuild_secs,
        });
    }
    Ok(Prepared { built })
}

/// The node's resident memory now and its peak (`VmRSS`, `VmHWM`), in kB (0 if unknown).
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// A counter's total as a reply states it: a JSON number, or a string of one.
fn parse_total(body: &str) -> anyhow::Result<i64> {
    let value: serde_json::Value =
        serde_json::from_str(body.trim()).with_context(|| format!("`{body}` is not JSON"))?;
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .with_context(|| format!("`{body}` is not a counter's total"))
}

/// POSTs `command` with `body` to every key of `ty` ([`IN_FLIGHT`] at a time); the sum of the
/// totals they reply.
async fn each_key(
    addr: Arc<str>,
    ty: Arc<str>,
    keys: Arc<Vec<String>>,
    command: &'static str,
    body: &'static [u8],
) -> anyhow::Result<i64> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (addr, ty, keys, next) = (addr.clone(), ty.clone(), keys.clone(), next.clone());
        tasks.spawn(async move {
            let mut sum = 0i64;
            while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                let path = format!("/v1/entities/{ty}/{key}/{command}");
                let (status, reply) =
                    crate::bench_effects::send(&addr, "POST", &path, body.to_vec()).await?;
                if status != 200 {
                    bail!("POST {path}: {status} {reply}");
                }
                sum += parse_total(&reply).with_context(|| format!("POST {path}"))?;
            }
            anyhow::Ok(sum)
        });
    }
    let mut sum = 0;
    while let Some(done) = tasks.join_next().await {
        sum += done.context("a request task panicked")??;
    }
    Ok(sum)
}

/// One wrk cell of one language.
struct Cell {
    lang: Lang,
    pattern: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
    ok: u64,
    delta: i64,
    cpu_us: Option<f64>,
    /// The guest calls of the load (`cella_type_guest_call_seconds`).
    guest: crate::guest_calls::Calls,
}

impl Cell {
    /// `ok` if the counters grew by the 2xx (plus at most the connections) and nothing failed.
    fn check(&self) -> &'static str {
        let extra = self.delta - self.ok as i64;
        if !(0..=i64::from(CONNS)).contains(&extra) {
            "MISMATCH"
        } else if self.non_2xx > 0 || self.socket_errors > 0 {
            "ERRORS"
        } else {
            "ok"
        }
    }
}

/// `rps` as a multiple of Rust's req/s for the same workload, if Rust ran.
fn ratio(cells: &[Cell], cell: &Cell) -> String {
    cells
        .iter()
        .find(|c| c.lang == Lang::Rust && c.pattern == cell.pattern && c.rps > 0.0)
        .map_or("-".to_string(), |rust| {
            format!("{:.3}", cell.rps / rust.rps)
        })
}

/// Deploys what [`prepare`] built to the node at `addr` (process `pid`) and runs the load;
/// `cpu` is the node's CPU time so far in µs, `started_kb` its RSS once healthy.
pub fn run(
    addr: &str,
    pid: u32,
    script: &Path,
    prepared: &Prepared,
    opts: &Options,
    cpu: &dyn Fn() -> u64,
    started_kb: u64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the languages part")?;
    let (before_deploys_kb, _) = memory_kb(pid);
    // Per language: the deploy's wall time and how much the node's RSS grew with it.
    let mut deploys = Vec::new();
    let mut last_kb = before_deploys_kb;
    for b in &prepared.built {
        let ty = entity_type(b.lang);
        let wasm =
            std::fs::read(&b.wasm).with_context(|| format!("reading {}", b.wasm.display()))?;
        let started = Instant::now();
        let (status, body) = request(addr, "PUT", &format!("/v1/modules/{ty}"), &wasm)?;
        if status >= 300 {
            bail!("deploy of {ty} failed: {status} {body}");
        }
        let secs = started.elapsed().as_secs_f64();
        let (now_kb, _) = memory_kb(pid);
        deploys.push((secs, now_kb.saturating_sub(last_kb)));
        last_kb = now_kb;
    }
    let after_deploys_kb = last_kb;

    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("k{i}")).collect());
    let hot: Arc<Vec<String>> = Arc::new(vec!["khot".to_string()]);
    let addr_arc: Arc<str> = addr.into();
    let mut cells = Vec::new();
    let mut load_kb = 0;
    for b in &prepared.built {
        let ty: Arc<str> = entity_type(b.lang).into();
        let pathfmt = format!("/v1/entities/{ty}/%s/add");
        eprintln!("languages: {}: warming up", b.lang);
        for set in [&keys, &hot] {
            runtime.block_on(each_key(
                addr_arc.clone(),
                ty.clone(),
                set.clone(),
                "add",
                b"0",
            ))?;
        }
        run_wrk_path(addr, script, 16, KEYS, 2, &pathfmt)?;
        for (pattern, set, nkeys) in [("1000 keys", &keys, KEYS), ("1 hot key", &hot, 1)] {
            let read = || {
                runtime.block_on(each_key(
                    addr_arc.clone(),
                    ty.clone(),
                    set.clone(),
                    "get",
                    b"",
                ))
            };
            let before = read()?;
            let calls_before = crate::guest_calls::Calls::scrape(addr, &ty)?;
            let cpu_before = cpu();
            let r = run_wrk_path(addr, script, CONNS, nkeys, opts.secs, &pathfmt)?;
            let cpu_used = cpu().saturating_sub(cpu_before);
            load_kb = load_kb.max(memory_kb(pid).0);
            let get = |k: &str| r[k].as_u64().unwrap_or(0);
            let ok = get("requests").saturating_sub(get("err_status"));
            std::thread::sleep(Duration::from_millis(500));
            let guest = crate::guest_calls::Calls::scrape(addr, &ty)?.since(&calls_before);
            let after = read()?;
            let cell = Cell {
                lang: b.lang,
                pattern,
                rps: ok as f64 / (get("duration_us").max(1) as f64 / 1e6),
                p50_ms: get("p50_us") as f64 / 1000.0,
                p99_ms: get("p99_us") as f64 / 1000.0,
                non_2xx: get("err_status"),
                socket_errors: get("err_connect")
                    + get("err_read")
                    + get("err_write")
                    + get("err_timeout"),
                ok,
                delta: after - before,
                cpu_us: (ok > 0).then(|| cpu_used as f64 / ok as f64),
                guest,
            };
            eprintln!(
                "languages: {} {pattern} c={CONNS}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms",
                b.lang, cell.rps, cell.p50_ms, cell.p99_ms
            );
            cells.push(cell);
        }
    }
    let (end_kb, peak_kb) = memory_kb(pid);

    println!(
        "\n| language | keys | conns | req/s | × Rust | p50 ms | p99 ms | non-2xx | socket errors \
         | 2xx | counter delta | check | CPU µs/req | guest call p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in &cells {
        let cpu = c.cpu_us.map_or("-".to_string(), |u| format!("{u:.0}"));
        println!(
            "| {} | {} | {CONNS} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {cpu} | {} |",
            c.lang,
            c.pattern,
            c.rps,
            ratio(&cells, c),
            c.p50_ms,
            c.p99_ms,
            c.non_2xx,
            c.socket_errors,
            c.ok,
            c.delta,
            c.check(),
            c.guest.summary()
        );
    }
    println!(
        "\n| language | component bytes | build s | rebuild s | deploy s | node RSS growth at deploy |"
    );
    println!("|---|---|---|---|---|---|");
    for (b, (secs, grown_kb)) in prepared.built.iter().zip(&deploys) {
        println!(
            "| {} | {} | {:.1} | {:.1} | {secs:.2} | {} |",
            b.lang,
            b.size,
            b.build_secs,
            b.rebuild_secs,
            mib(*grown_kb)
        );
    }
    println!(
        "\nNode RSS: {} after startup, {} before the deploys, {} after the {} deploy(s), {} at \
         most after a cell, {} at the end; peak (VmHWM) {}.",
        mib(started_kb),
        mib(before_deploys_kb),
        mib(after_deploys_kb),
        prepared.built.len(),
        mib(load_kb),
        mib(end_kb),
        mib(peak_kb)
    );
    println!(
        "\n{}s per cell after every key was touched and a 2 s warm-up, wrk -t1 -c{CONNS}, POST \
         .../add body 1, durable, one node. × Rust: req/s over Rust's for the same keys. CPU \
         µs/req: the node's user + system time per 2xx. Build: `cella build` of the fresh \
         scaffold (Rust compiles its dependencies too); rebuild: after touching the entity's \
         source. Deploy: PUT /v1/modules until the node answered (validated and compiled).",
        opts.secs
    );
    if cells.iter().any(|c| c.check() != "ok") {
        bail!("languages: a check failed (see the table)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_from_replies() {
        assert_eq!(parse_total("42").ok(), Some(42));
        assert_eq!(parse_total(" -7\n").ok(), Some(-7));
        assert_eq!(
            parse_total("\"9007199254740993\"").ok(),
            Some(9007199254740993)
        );
        assert!(parse_total("{\"total\":1}").is_err());
        assert!(parse_total("").is_err());
    }

    #[test]
    fn the_component_cella_build_names() {
        let out = "built target/counter-js.wasm\n  package   counter-js\n";
        assert_eq!(
            built_path(out),
            Some(PathBuf::from("target/counter-js.wasm"))
        );
        assert_eq!(built_path("nothing\n"), None);
    }

    #[test]
    fn checks_and_ratios() {
        let cell = |lang, rps, ok, delta, non_2xx| Cell {
            lang,
            pattern: "1000 keys",
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            non_2xx,
            socket_errors: 0,
            ok,
            delta,
            cpu_us: None,
            guest: Default::default(),
        };
        let cells = [
            cell(Lang::Rust, 20_000.0, 100, 100, 0),
            cell(Lang::Python, 5_000.0, 100, 164, 0),
            cell(Lang::Js, 4_000.0, 100, 165, 0),
        ];
        assert_eq!(cells.each_ref().map(Cell::check), ["ok", "ok", "MISMATCH"]);
        assert_eq!(cell(Lang::Js, 1.0, 10, 10, 1).check(), "ERRORS");
        assert_eq!(ratio(&cells, &cells[1]), "0.250");
        assert_eq!(ratio(&cells[1..], &cells[1]), "-");
    }

    #[test]
    fn memory_of_this_process() {
        let (rss, peak) = memory_kb(std::process::id());
        if cfg!(target_os = "linux") {
            assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        }
        assert_eq!(memory_kb(u32::MAX), (0, 0));
    }
}
