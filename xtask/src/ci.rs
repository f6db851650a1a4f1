//! `cargo xtask test`, `ci` and `demo`: the project's standing checks and its main job.
//! `ci` is exactly what `.ci/run` runs: rustfmt check, clippy with `-D warnings`, the guest
//! build, and every test of the workspace.

use std::process::Command;

use anyhow::bail;

use crate::{build, workspace_root};

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO")).current_dir(workspace_root()).args(args).status()?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Builds the guests, then runs every test of the workspace.
pub fn test() -> anyhow::Result<()> {
    build::build_examples()?;
    cargo(&["test", "--workspace", "--all-targets"])?;
    cargo(&["test", "--workspace", "--doc"])
}

/// Format check, lints, then [`test`].
pub fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    build::build_examples()?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test()
}

/// Builds the examples and a release `cella`, then runs an embedded single node serving them.
pub fn demo(listen: &str) -> anyhow::Result<()> {
    let root = workspace_root();
    build::build_examples()?;
    cargo(&["build", "--release", "-p", "cella-server", "--bin", "cella"])?;
    let components = root.join("target/components");
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
    let status = Command::new(root.join("target/release/cella"))
        .current_dir(&root)
        .args(["serve", "--data-dir", ".cella", "--listen", listen, "--deploy"])
        .arg(format!("counter={}", components.join("counter.wasm").display()))
        .arg("--deploy")
        .arg(format!("shopping-cart={}", components.join("shopping-cart.wasm").display()))
        .status()?;
    if !status.success() {
        bail!("cella serve exited with {status}");
    }
    Ok(())
}
