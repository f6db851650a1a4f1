//! `cargo xtask test`, `ci` and `demo`: the project's standing checks and its main job.
//! `ci` is exactly what `.ci/run` runs: rustfmt check, clippy with `-D warnings`, the guest
//! build, and every test of the workspace.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::bail;

use crate::{build, workspace_root};

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(args)
        .status()?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Runs `cargo test` with `args`, echoing its output, and adds its `test result:` counts to
/// `totals` (passed, failed, ignored).
fn cargo_test(args: &[&str], totals: &mut [u64; 3]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let mut child = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(args)
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

/// Builds the guests, then runs every test of the workspace and prints the totals.
pub fn test() -> anyhow::Result<()> {
    build::build_examples()?;
    let mut totals = [0u64; 3];
    cargo_test(&["test", "--workspace", "--doc"], &mut totals)?;
    cargo_test(&["test", "--workspace", "--all-targets"], &mut totals)?;
    println!(
        "\nall tests: {} passed, {} failed, {} skipped",
        totals[0], totals[1], totals[2]
    );
    if totals[0] == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Format check, lints, then [`test`].
pub fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    build::build_examples()?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test()
}

/// Builds the examples and a release `cella`, then runs an embedded single node serving them.
pub fn demo(listen: &str) -> anyhow::Result<()> {
    let root = workspace_root();
    build::build_examples()?;
    cargo(&["build", "--release", "-p", "cella-server", "--bin", "cella"])?;
    let components = build::target_dir(&root).join("components");
    let base = format!("http://{listen}");
    println!(
        "\nTry, from another terminal:\n\
         \x20 curl -X POST {base}/v1/entities/counter/alice/add -d 5\n\
         \x20 curl -X POST {base}/v1/entities/counter/alice/get\n\
         \x20 curl -X POST {base}/v1/entities/shopping-cart/c1/add-item -d '{{\"productId\":\"p1\",\"name\":\"Apple\",\"quantity\":2}}'\n\
         \x20 curl -X POST {base}/v1/entities/shopping-cart/c1/get-cart\n\
         \x20 curl {base}/v1/entities/shopping-cart/c1/journal\n\
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
        .status()?;
    if !status.success() {
        bail!("cella serve exited with {status}");
    }
    Ok(())
}
