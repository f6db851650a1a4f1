//! `cargo xtask build-examples`: builds the guest components (the examples and the runtime's
//! test guests) for wasm32-wasip2 with the `guest` profile and collects them in
//! `target/components/<crate>.wasm`; the components of the TCK (tests/tck/SPEC.md) are also
//! copied to `target/components/rust/<name>.wasm`, next to the other languages' builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The guest target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile guests are built with.
pub const PROFILE: &str = "guest";
/// The guest crates `build-examples` builds.
pub const GUESTS: &[&str] = &[
    "counter",
    "shopping-cart",
    "cart-stats",
    "likes",
    "account",
    "transfer",
    "misbehave",
    "wrong-world",
    "tally",
    "tally-divergent",
    "tally-trapping",
    "clock",
    "v01-counter",
    "visits",
    "presence",
    "tck-value",
    "tck-events",
    "tck-crdt",
];

/// The guests the TCK deploys, also collected as `target/components/rust/<crate>.wasm`.
pub const TCK_COMPONENTS: &[&str] = &[
    "tck-value",
    "tck-events",
    "tck-crdt",
    "counter",
    "shopping-cart",
];

/// A built component.
#[derive(Clone, Debug)]
pub struct Component {
    /// The crate name, e.g. `shopping-cart`.
    pub name: String,
    /// Where it was copied: `target/components/<name>.wasm`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Builds every guest in [`GUESTS`] in one cargo invocation, copies the components to
/// `<target>/components/<crate>.wasm` (and those of [`TCK_COMPONENTS`] to
/// `<target>/components/rust/<crate>.wasm`), prints their sizes and returns them.
pub fn build_examples() -> anyhow::Result<Vec<Component>> {
    let root = crate::workspace_root();
    crate::toolchains::ensure_rust_target()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "--profile", PROFILE, "--target", TARGET]);
    for guest in GUESTS {
        build.args(["-p", guest]);
    }
    let status = build.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building the guest components failed ({status})");
    }

    let target_dir = target_dir(&root);
    let built = target_dir.join(TARGET).join(PROFILE);
    let out = target_dir.join("components");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut components = Vec::with_capacity(GUESTS.len());
    for guest in GUESTS {
        let from = built.join(format!("{}.wasm", guest.replace('-', "_")));
        let to = out.join(format!("{guest}.wasm"));
        let size = std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        components.push(Component {
            name: (*guest).to_owned(),
            path: to,
            size,
        });
    }
    for c in &components {
        println!("{:<15} {:>8} bytes  {}", c.name, c.size, c.path.display());
    }

    let rust = out.join("rust");
    std::fs::create_dir_all(&rust).with_context(|| format!("cannot create {}", rust.display()))?;
    for name in TCK_COMPONENTS {
        let from = out.join(format!("{name}.wasm"));
        let to = rust.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    println!(
        "TCK components ({}) also in {}",
        TCK_COMPONENTS.join(", "),
        rust.display()
    );
    Ok(components)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
