//! `cargo xtask test`, `ci` and `demo`: the project's standing checks and its main job.
//! `ci` is exactly what `.ci/run` runs: it installs the toolchains that are missing (see
//! [`crate::toolchains`], and Chromium and playwright-core for the console's browser tests), then
//! the rustfmt check, the licence check ([`crate::licenses`]), the
//! guest build, clippy with `-D warnings`, every test of the workspace (the tidy checks of
//! `tidy.rs` among them), the Python and JavaScript SDKs' unit tests, then the TCK for every
//! guest language.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::bail;

use crate::{build, licenses, tck, toolchains, workspace_root};

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = toolchains::configure(&mut Command::new(env!("CARGO")))
        .current_dir(workspace_root())
        .args(args)
        .status()?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Runs `cargo test` with `args` and the environment variables `envs`, echoing its output, and
/// adds its `test result:` counts to `totals` (passed, failed, ignored).
pub fn cargo_test(
    args: &[&str],
    envs: &[(&str, &str)],
    totals: &mut [u64; 3],
) -> anyhow::Result<()> {
    let shown_envs: String = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("$ {shown_envs}cargo {}", args.join(" "));
    let mut child = toolchains::configure(&mut Command::new(env!("CARGO")))
        .current_dir(workspace_root())
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for (i, label) in ["passed", "failed", "ignored"].iter().enumerate() {
                    totals[i] += count_before(rest, label);
                }
            }
        }
    }
    if !child.wait()?.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// In `ok. 3 passed; 0 failed; ...`, the number before `label`.
fn count_before(text: &str, label: &str) -> u64 {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(';') == label)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

/// Prints the totals line of `what` (e.g. `all tests: 3 passed, 0 failed, 1 skipped`); fails
/// if no test passed.
pub fn print_totals(what: &str, totals: &[u64; 3]) -> anyhow::Result<()> {
    println!(
        "\n{what}: {} passed, {} failed, {} skipped",
        totals[0], totals[1], totals[2]
    );
    if totals[0] == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Every test of the workspace (the guests must be built), counted into `totals`.
fn workspace_tests(totals: &mut [u64; 3]) -> anyhow::Result<()> {
    cargo_test(&["test", "--workspace", "--doc"], &[], totals)?;
    cargo_test(&["test", "--workspace", "--all-targets"], &[], totals)
}

/// Installs the guest toolchains, builds the guests, then runs every test of the workspace and
/// prints the totals.
pub fn test() -> anyhow::Result<()> {
    // The developer-loop tests build Python and JavaScript guests.
    tck::prepare(tck::Lang::ALL)?;
    build::build_examples()?;
    let mut totals = [0u64; 3];
    workspace_tests(&mut totals)?;
    print_totals("all tests", &totals)
}

/// Toolchains, format check, licences, lints, [`test`], then the TCK for every guest
/// language. What cannot be installed (Python 3, Node.js) fails it up front: the TCK never
/// skips a language.
pub fn ci() -> anyhow::Result<()> {
    toolchains::NOT_INCREMENTAL.store(true, std::sync::atomic::Ordering::Relaxed);
    toolchains::ensure_rust()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    licenses::check(&workspace_root())?;
    tck::prepare(tck::Lang::ALL)?;
    ensure_browser()?;
    build::build_examples()?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    let mut totals = [0u64; 3];
    workspace_tests(&mut totals)?;
    sdk_tests(&mut totals)?;
    tck::run(tck::Lang::ALL, &mut totals)?;
    print_totals("all tests", &totals)
}

/// What the console's browser tests (`tests/tests/console.rs`) drive: Chromium from apt when
/// `/usr/bin/chromium` is missing, and playwright-core (`npm ci` in `tests/browser`, pinned by
/// its `package-lock.json`) when `tests/browser/node_modules` is missing.
fn ensure_browser() -> anyhow::Result<()> {
    let run = |program: &str, args: &[&str]| -> anyhow::Result<bool> {
        eprintln!("$ {program} {}", args.join(" "));
        Ok(Command::new(program)
            .current_dir(workspace_root())
            .args(args)
            .status()?
            .success())
    };
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        println!("installing Chromium for the console's browser tests (apt-get install chromium)");
        let apt = ["install", "-y", "--no-install-recommends", "chromium"];
        // A stale package index is refreshed once.
        let installed =
            run("apt-get", &apt)? || (run("apt-get", &["update"])? && run("apt-get", &apt)?);
        if !installed {
            bail!("`apt-get install -y chromium` failed: the console's browser tests need it");
        }
    }
    if !workspace_root().join("tests/browser/node_modules").exists() {
        println!(
            "installing playwright-core for the console's browser tests (npm ci in tests/browser)"
        );
        let npm = ["ci", "--prefix", "tests/browser", "--no-audit", "--no-fund"];
        if !run("npm", &npm)? {
            bail!("`npm ci` in tests/browser failed: the console's browser tests need it");
        }
    }
    Ok(())
}

/// The Python and JavaScript SDKs' own unit tests (`python3 -m unittest`, `node --test`),
/// counted into `totals`.
fn sdk_tests(totals: &mut [u64; 3]) -> anyhow::Result<()> {
    let root = workspace_root();
    eprintln!("$ python3 -m unittest discover -s sdk-guest/python/tests");
    let py = Command::new("python3")
        .current_dir(&root)
        .args(["-m", "unittest", "discover", "-s", "sdk-guest/python/tests"])
        .output()?;
    let text = String::from_utf8_lossy(&py.stderr);
    eprint!("{text}");
    // unittest: `Ran 94 tests in 0.1s` then `OK (skipped=4)` or `FAILED (failures=1, ...)`.
    let ran = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let field = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("OK") || l.starts_with("FAILED"))
            .find_map(|l| {
                let at = l.find(&format!("{name}="))?;
                l[at + name.len() + 1..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let (skipped, failed) = (field("skipped"), field("failures") + field("errors"));
    totals[0] += ran.saturating_sub(skipped + failed);
    totals[1] += failed;
    totals[2] += skipped;
    if !py.status.success() || ran == 0 {
        bail!("the Python SDK's tests failed");
    }

    eprintln!("$ npm test --prefix sdk-guest/js");
    let js = Command::new("npm")
        .current_dir(&root)
        .args(["test", "--prefix", "sdk-guest/js", "--silent"])
        .output()?;
    let text = String::from_utf8_lossy(&js.stdout);
    print!("{text}");
    // node --test (TAP): `# pass 72`, `# fail 0`, `# skipped 0`.
    let count = |label: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {label} "))?.trim().parse().ok())
            .unwrap_or(0)
    };
    totals[0] += count("pass");
    totals[1] += count("fail");
    totals[2] += count("skipped") + count("todo");
    if !js.status.success() || count("pass") == 0 {
        bail!("the JavaScript SDK's tests failed");
    }
    Ok(())
}

/// Builds the examples and a release `cella`, then runs an embedded single node serving them.
pub fn demo(listen: &str) -> anyhow::Result<()> {
    let root = workspace_root();
    build::build_examples()?;
    cargo(&["build", "--release", "-p", "cella-cli", "--bin", "cella"])?;
    let components = build::target_dir(&root).join("components");
    let base = format!("http://{listen}");
    println!(
        "\nTry, from another terminal:\n\
         \x20 curl -X POST {base}/v1/entities/counter/alice/add -d 5\n\
         \x20 curl -X POST {base}/v1/entities/counter/alice/get\n\
         \x20 curl -X POST {base}/v1/entities/shopping-cart/c1/add-item -d '{{\"productId\":\"p1\",\"name\":\"Apple\",\"quantity\":2}}'\n\
         \x20 curl -X POST {base}/v1/entities/shopping-cart/c1/get-cart\n\
         \x20 curl {base}/v1/entities/shopping-cart/c1/journal\n\
         \x20 curl -X POST {base}/v1/entities/likes/post-1/like        # a crdt, any node\n\
         \x20 curl -N {base}/v1/entities/likes/post-1/watch            # its value, live\n\
         \x20 target/release/cella call counter/alice add 1 --server {base}\n\
         \x20 target/release/cella inspect counter/alice --server {base}\n\
         Ctrl-C stops the node; its data stays in ./.cella.\n"
    );
    let status = Command::new(build::target_dir(&root).join("release/cella"))
        .current_dir(&root)
        .args([
            "serve",
            "--data-dir",
            ".cella",
            "--listen",
            listen,
            "--deploy",
        ])
        .arg(format!(
            "counter={}",
            components.join("counter.wasm").display()
        ))
        .arg("--deploy")
        .arg(format!(
            "shopping-cart={}",
            components.join("shopping-cart.wasm").display()
        ))
        .arg("--deploy")
        .arg(format!("likes={}", components.join("likes.wasm").display()))
        .status()?;
    if !status.success() {
        bail!("cella serve exited with {status}");
    }
    Ok(())
}
