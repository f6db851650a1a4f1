//! The TCK suite (tests/tck/SPEC.md). For every guest language selected by `CELLA_TCK_LANGS`
//! (a comma-separated subset of `rust,python,js`; default `rust`) it deploys that language's
//! `target/components/<lang>/{tck-value,tck-events,tck-crdt,counter,shopping-cart}.wasm` to a
//! real node as `tck-value`, `tck-events`, `tck-crdt`, `counter` and `cart`, and checks every
//! behaviour of the spec over HTTP (the checks are in `tck/checks.rs` and `tck/checks/`, one
//! module per part of the spec; the requests in `tck/api.rs`). `cargo xtask tck` builds the
//! components and runs this.
//!
//! This target brings its own small harness (`harness = false`): compiling one JavaScript or
//! Python component takes tens of seconds, so each language deploys once, to one node, and every
//! area of the spec runs against that node in turn (the restarts last). Each (language, area) is
//! reported as a test of its own, `tck::<lang>::<area>`, in libtest's format, so `cargo xtask`
//! counts them; a failing area does not stop the others; languages not selected are `ignored`;
//! every step is bounded in time. As with libtest, positional arguments filter tests by
//! substring, and `--exact`, `--skip NAME` and `--list` are understood.

#[path = "tck/api.rs"]
mod api;
#[path = "tck/checks.rs"]
mod checks;

use std::{
    any::Any,
    future::Future,
    io::Write,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use cella_tests::TestNode;

/// The guest languages, in the order they run.
const LANGS: &[&str] = &["rust", "python", "js"];
/// The environment variable selecting languages.
const LANGS_VAR: &str = "CELLA_TCK_LANGS";
/// (entity type deployed, component file name) of every TCK component.
const COMPONENTS: &[(&str, &str)] = &[
    (checks::VALUE, "tck-value"),
    (checks::EVENTS, "tck-events"),
    (checks::CRDT, "tck-crdt"),
    (checks::COUNTER, "counter"),
    (checks::CART, "shopping-cart"),
];
/// Bound of a language's setup: starting a node and compiling its components.
const DEPLOY_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Bound of one area's checks.
const AREA_LIMIT: Duration = Duration::from_secs(5 * 60);

/// A language's node, with the components deployed, and its data directory.
pub struct Suite {
    pub lang: &'static str,
    pub node: TestNode,
    // Dropped after the node (declaration order), which it outlives.
    _dir: tempfile::TempDir,
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => return fail(&e),
    };
    let selected = match selected_languages(std::env::var(LANGS_VAR).ok().as_deref()) {
        Ok(langs) => langs,
        Err(e) => return fail(&e),
    };
    let all: Vec<(&'static str, checks::Area)> = LANGS
        .iter()
        .flat_map(|lang| checks::Area::ALL.iter().map(move |area| (*lang, *area)))
        .collect();
    let matching: Vec<_> = all
        .iter()
        .copied()
        .filter(|(lang, area)| args.matches(&test_name(lang, *area)))
        .collect();
    if args.list {
        for (lang, area) in &matching {
            println!("{}: test", test_name(lang, *area));
        }
        return ExitCode::SUCCESS;
    }

    let started = Instant::now();
    let mut report = Report {
        filtered_out: all.len() - matching.len(),
        ..Report::default()
    };
    println!("\nrunning {} tests", matching.len());
    for lang in LANGS {
        let areas: Vec<checks::Area> = matching
            .iter()
            .filter(|(l, _)| l == lang)
            .map(|(_, area)| *area)
            .collect();
        if areas.is_empty() {
            continue;
        }
        if selected.contains(lang) {
            run_language(lang, &areas, &mut report);
        } else {
            for area in areas {
                let reason = format!("not in {LANGS_VAR} ({})", selected.join(","));
                report.ignore(&test_name(lang, area), &reason);
            }
        }
    }
    report.finish(started.elapsed())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(101)
}

fn test_name(lang: &str, area: checks::Area) -> String {
    format!("tck::{lang}::{}", area.name())
}

/// The languages `CELLA_TCK_LANGS` selects (`rust` when unset).
fn selected_languages(var: Option<&str>) -> Result<Vec<&'static str>, String> {
    let Some(var) = var else {
        return Ok(vec!["rust"]);
    };
    let mut langs = Vec::new();
    for name in var.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(lang) = LANGS.iter().find(|l| **l == name) else {
            return Err(format!(
                "{LANGS_VAR}={var}: unknown language `{name}` (the languages are {})",
                LANGS.join(", ")
            ));
        };
        if !langs.contains(lang) {
            langs.push(*lang);
        }
    }
    if langs.is_empty() {
        return Err(format!(
            "{LANGS_VAR} is set but selects no language (use a comma-separated subset of {})",
            LANGS.join(",")
        ));
    }
    Ok(langs)
}

/// Deploys `lang`'s components to a new node, then runs `areas` against it in order.
fn run_language(lang: &'static str, areas: &[checks::Area], report: &mut Report) {
    let setup = bounded(DEPLOY_LIMIT, start(lang));
    let setup_area = checks::Area::Deploy;
    let mut suite = match setup {
        Ok(suite) => {
            if areas.contains(&setup_area) {
                report.record(&test_name(lang, setup_area), Ok(()));
            }
            suite
        }
        Err(e) => {
            for area in areas {
                let result = if *area == setup_area {
                    Err(e.clone())
                } else {
                    Err(format!(
                        "not run: deploying the {lang} components failed: {e}"
                    ))
                };
                report.record(&test_name(lang, *area), result);
            }
            return;
        }
    };
    for area in areas.iter().filter(|a| **a != setup_area) {
        let result = bounded(AREA_LIMIT, area.run(&mut suite));
        report.record(&test_name(lang, *area), result);
    }
}

/// Starts a node and deploys `lang`'s components, checking their descriptors.
async fn start(lang: &'static str) -> Suite {
    let files: Vec<(&str, PathBuf)> = COMPONENTS
        .iter()
        .map(|(ty, name)| (*ty, component_file(lang, name)))
        .collect();
    let missing: Vec<String> = files
        .iter()
        .filter(|(_, file)| !file.exists())
        .map(|(_, file)| file.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {lang} component(s): {}\nhint: {}",
        missing.join(", "),
        build_hint(lang)
    );
    let dir = tempfile::tempdir().expect("create a temporary data directory");
    // No snapshots, so that every restart folds the event-sourced states again from their
    // events with the guest's `apply`.
    let node = TestNode::start(dir.path(), &["--snapshot-every", "1000000"]).expect("start a node");
    for (ty, file) in &files {
        let r = node.deploy(ty, file).await;
        assert_eq!(
            r.status,
            201,
            "deploying {} as `{ty}`: {}",
            file.display(),
            r.body
        );
    }
    let suite = Suite {
        lang,
        node,
        _dir: dir,
    };
    checks::descriptors(&suite).await;
    suite
}

/// `target/components/<lang>/<name>.wasm` (honouring `CARGO_TARGET_DIR` as cargo does).
fn component_file(lang: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target
        .join("components")
        .join(lang)
        .join(format!("{name}.wasm"))
}

/// How to build a language's TCK components.
fn build_hint(lang: &str) -> String {
    let script = match lang {
        "python" => "python3 sdk-guest/python/build_examples.py target/components/python",
        "js" => "node sdk-guest/js/build-examples.mjs target/components/js",
        _ => "cargo xtask build-examples",
    };
    format!("build them with `cargo xtask tck --lang {lang}` (which runs `{script}`)")
}

/// Runs `fut` to completion on a runtime of its own, within `limit`; a panic or the limit is an
/// `Err` with the reason.
fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async { tokio::time::timeout(limit, fut).await })
    }));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(format!("did not finish within {} s", limit.as_secs())),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}

/// Command-line arguments, as far as libtest's are meaningful here.
#[derive(Default)]
struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => parsed.list = true,
                "--exact" => parsed.exact = true,
                "--skip" => parsed
                    .skip
                    .push(args.next().ok_or("--skip needs a test name")?),
                // libtest options with a value, which change nothing here.
                "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                    args.next();
                }
                flag if flag.starts_with('-') => {} // --nocapture, --show-output, -q, ...
                filter => parsed.filters.push(filter.to_owned()),
            }
        }
        Ok(parsed)
    }

    fn matches(&self, name: &str) -> bool {
        let hit = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skip.iter().any(hit)
    }
}

/// Test results, printed as libtest prints them.
#[derive(Default)]
struct Report {
    passed: usize,
    ignored: usize,
    filtered_out: usize,
    failures: Vec<(String, String)>,
}

impl Report {
    fn record(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("test {name} ... ok");
            }
            Err(reason) => {
                println!("test {name} ... FAILED");
                self.failures.push((name.to_owned(), reason));
            }
        }
        let _ = std::io::stdout().flush();
    }

    fn ignore(&mut self, name: &str, reason: &str) {
        self.ignored += 1;
        println!("test {name} ... ignored, {reason}");
    }

    fn finish(self, elapsed: Duration) -> ExitCode {
        if !self.failures.is_empty() {
            println!("\nfailures:\n");
            for (name, reason) in &self.failures {
                println!("---- {name} ----\n{reason}\n");
            }
            println!("failures:");
            for (name, _) in &self.failures {
                println!("    {name}");
            }
        }
        let verdict = if self.failures.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "\ntest result: {verdict}. {} passed; {} failed; {} ignored; 0 measured; {} filtered \
             out; finished in {:.2}s\n",
            self.passed,
            self.failures.len(),
            self.ignored,
            self.filtered_out,
            elapsed.as_secs_f64()
        );
        if self.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(101)
        }
    }
}
