//! The `cella` command line's two outputs against a real node: the node's JSON when stdout is
//! not a terminal (or with `--json`), and tables and summaries with `--table` or
//! `CELLA_OUTPUT=table` (what a terminal gets).

use std::process::{Command, Output};

use cella_tests::{TestNode, cella_bin, output_text};
use serde_json::Value;

fn cella(args: &[&str], env: &[(&str, &str)]) -> String {
    let out: Output = Command::new(cella_bin())
        .args(args)
        .env_remove("CELLA_OUTPUT")
        .envs(env.iter().copied())
        .output()
        .expect("run cella");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "cella {args:?}: {stderr}");
    // Not a terminal: no spinner on stderr.
    assert!(
        !stderr.contains('⠁') && !stderr.contains("deploying"),
        "{stderr}"
    );
    stdout
}

/// The words of each line.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_when_piped_tables_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::with_examples(dir.path(), &[]).await;
    let server = node.url.as_str();
    for n in ["40", "2"] {
        assert_eq!(node.call("counter", "alice", "add", n).await.status, 200);
    }

    // Piped: JSON, as scripts read it.
    let modules: Value = serde_json::from_str(&cella(&["modules", "--server", server], &[]))
        .expect("modules prints JSON when piped");
    assert_eq!(modules["modules"][1]["type"], "counter");
    let status: Value =
        serde_json::from_str(&cella(&["cluster", "status", "--server", server], &[]))
            .expect("cluster status prints JSON when piped");
    assert_eq!(
        status["partitions"],
        status["groups"].as_array().unwrap().len() - 1
    );
    let state: Value = serde_json::from_str(&cella(
        &["inspect", "counter/alice", "--server", server],
        &[],
    ))
    .unwrap();
    assert_eq!(state["state"]["total"], 42);

    // Tables, by flag or by environment.
    let table = cella(&["modules", "--table", "--server", server], &[]);
    let by_env = cella(
        &["modules", "--server", server],
        &[("CELLA_OUTPUT", "table")],
    );
    assert_eq!(table, by_env);
    let lines = rows(&table);
    assert_eq!(
        lines[0][..5],
        ["TYPE", "VERSION", "KIND", "CONSISTENCY", "DURABILITY"],
        "{table}"
    );
    assert_eq!(
        lines[1][..5],
        ["cart", "1", "event-sourced", "strong", "durable"],
        "{table}"
    );
    assert_eq!(
        lines[2][..5],
        ["counter", "1", "value", "strong", "durable"],
        "{table}"
    );
    // `--json` wins over the environment.
    let json = cella(
        &["modules", "--json", "--server", server],
        &[("CELLA_OUTPUT", "table")],
    );
    assert!(serde_json::from_str::<Value>(&json).is_ok(), "{json}");

    let inspect = cella(
        &["inspect", "counter/alice", "--table", "--server", server],
        &[],
    );
    assert!(
        inspect.starts_with("counter/alice · sequence 2 · module v1\n"),
        "{inspect}"
    );
    assert!(inspect.contains("\"total\": 42"), "{inspect}");
    let journal = cella(
        &[
            "inspect",
            "counter/alice",
            "--journal",
            "--table",
            "--server",
            server,
        ],
        &[],
    );
    let lines = rows(&journal);
    assert_eq!(
        lines[0],
        ["SEQ", "TIME", "COMMAND", "VERSION", "CHANGE"],
        "{journal}"
    );
    assert_eq!(lines.len(), 3, "{journal}");
    assert_eq!(lines[2][0], "2", "{journal}");
    assert!(
        journal.contains("UTC") && journal.contains("add"),
        "{journal}"
    );

    let cluster = cella(&["cluster", "status", "--table", "--server", server], &[]);
    assert!(cluster.starts_with("node 1 · "), "{cluster}");
    let groups = rows(&cluster)
        .into_iter()
        .filter(|r| r.get(1).is_some_and(|s| s == "leader"))
        .count();
    assert_eq!(
        groups as u64,
        status["partitions"].as_u64().unwrap() + 1,
        "{cluster}"
    );
}
