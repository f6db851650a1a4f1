//! The crate graph's rules, checked as a test (so by `cargo xtask ci`): which workspace crates
//! each crate may depend on, and which crates alone may use wasmtime, redb, openraft and hyper.
//! ARCHITECTURE.md ("Crates and their dependencies") states the same rules for readers; a change
//! to one is a change to both. Only normal and build dependencies count: a crate's tests may
//! use anything.

use std::{collections::BTreeMap, process::Command};

use crate::workspace_root;

/// The workspace crates each runtime, SDK and tool crate may depend on. Guests (examples, test
/// and TCK guests) may depend on `cella-sdk` only; `cella-tests` on anything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cella-core", &[]),
    ("cella-crdt", &[]),
    ("cella-wit", &[]),
    ("cella-sdk", &[]),
    ("cella-store", &["cella-core"]),
    ("cella-host", &["cella-core"]),
    ("cella-cluster", &["cella-core", "cella-store"]),
    (
        "cella-node",
        &[
            "cella-core",
            "cella-crdt",
            "cella-store",
            "cella-host",
            "cella-cluster",
        ],
    ),
    (
        "cella-dev",
        &[
            "cella-core",
            "cella-host",
            "cella-node",
            "cella-sdk",
            "cella-wit",
        ],
    ),
    ("cella-client", &["cella-core"]),
    (
        "cella-cli",
        &["cella-node", "cella-dev", "cella-cluster", "cella-client"],
    ),
    ("xtask", &["cella-client"]),
];

/// Third-party crates kept behind one boundary: the workspace crates that may name them.
const CONFINED: &[(&str, &[&str])] = &[
    ("wasmtime", &["cella-host"]),
    ("wasmtime-wasi", &["cella-host"]),
    ("redb", &["cella-store"]),
    ("openraft", &["cella-cluster"]),
    (
        "hyper",
        &["cella-cluster", "cella-node", "cella-client", "cella-cli"],
    ),
];

/// Each workspace package's name and its normal and build dependencies' names.
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default().to_string();
        let dependencies = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .filter_map(|d| d["name"].as_str().map(String::from))
            .collect();
        graph.insert(name, dependencies);
    }
    graph
}

#[test]
fn crates_depend_only_as_architecture_md_says() {
    let graph = workspace_dependencies();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (package, dependencies) in &graph {
        for dependency in dependencies.iter().filter(|d| graph.contains_key(*d)) {
            let ok = match allowed.get(package.as_str()) {
                Some(list) => list.contains(&dependency.as_str()),
                None if package == "cella-tests" => true,
                // Guests: examples, test guests, TCK models.
                None => dependency == "cella-sdk",
            };
            if !ok {
                problems.push(format!(
                    "{package} depends on {dependency}: not allowed by the crate graph \
                     (hint: see ARCHITECTURE.md, \"Crates and their dependencies\", and \
                     xtask/src/layering.rs)"
                ));
            }
        }
        for (confined, owners) in CONFINED {
            if package != "cella-tests"
                && dependencies.iter().any(|d| d == confined)
                && !owners.contains(&package.as_str())
            {
                problems.push(format!(
                    "{package} depends on {confined}, which only {} may use (hint: go \
                     through that crate's API)",
                    owners.join(", ")
                ));
            }
        }
    }
    for (package, _) in ALLOWED {
        if !graph.contains_key(*package) {
            problems.push(format!(
                "{package} is in xtask/src/layering.rs but not in the workspace (hint: rename \
                 or remove it there)"
            ));
        }
    }
    assert!(problems.is_empty(), "crate graph:\n{}", problems.join("\n"));
}
