//! `cargo xtask`: the workspace's developer tasks. This file owns the command-line dispatch;
//! each subcommand lives in its own module.

mod bench;
mod build;
mod ci;
mod http;
mod tck;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build-examples   build the example and test guest components into target/components/
                   (the TCK's Rust components also into target/components/rust/)
  test             build-examples, then every test of the workspace
  tck [--lang rust|python|js]
                   build the TCK components of the languages (default: all three) into
                   target/components/<lang>/, then run the TCK suite (tests/tck/SPEC.md)
  ci               rustfmt check, clippy -D warnings, test, then the TCK for every
                   language; fails if the Python or JavaScript toolchain is missing
                   (what .ci/run runs)
  demo [ADDR]      build everything and run a single node serving the examples (default 127.0.0.1:8080)
  bench [--secs N] [--conns 1,16,64] [--nodes N] [--no-micro]
                   wrk durable-counter workload against a dist-profile node (or a cluster of
                   N nodes, one wrk per node), then the command-path micro-benchmark;
                   CELLA_BENCH_BIN=path runs that cella build instead (A/B in one sitting),
                   CELLA_BENCH_SERVE_ARGS adds `cella serve` arguments
  help             show this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-examples") => {
            no_extra_args(&args).and_then(|()| build::build_examples().map(|_| ()))
        }
        Some("test") => no_extra_args(&args).and_then(|()| ci::test()),
        Some("tck") => tck::parse_args(&args[1..]).and_then(|langs| tck::tck(&langs)),
        Some("ci") => no_extra_args(&args).and_then(|()| ci::ci()),
        Some("demo") => ci::demo(args.get(1).map(String::as_str).unwrap_or("127.0.0.1:8080")),
        Some("bench") => bench_args(&args[1..])
            .and_then(|(secs, conns, micro, nodes)| bench::run(secs, &conns, micro, nodes)),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(anyhow::anyhow!("no command given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn no_extra_args(args: &[String]) -> anyhow::Result<()> {
    match args.get(1) {
        Some(extra) => Err(anyhow::anyhow!("unexpected argument `{extra}`\n\n{USAGE}")),
        None => Ok(()),
    }
}

fn bench_args(args: &[String]) -> anyhow::Result<(u32, Vec<u32>, bool, u32)> {
    let (mut secs, mut conns, mut micro, mut nodes) = (10, vec![1, 16, 64], true, 1);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--secs needs a number"))?
            }
            "--conns" => {
                conns = it
                    .next()
                    .map(|v| v.split(',').filter_map(|c| c.parse().ok()).collect())
                    .filter(|c: &Vec<u32>| !c.is_empty())
                    .ok_or_else(|| anyhow::anyhow!("--conns needs a list like 1,16,64"))?
            }
            "--no-micro" => micro = false,
            "--nodes" => {
                nodes = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| anyhow::anyhow!("--nodes needs a number of nodes (1 or more)"))?
            }
            other => anyhow::bail!("unexpected argument `{other}`\n\n{USAGE}"),
        }
    }
    Ok((secs, conns, micro, nodes))
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map(PathBuf::from).unwrap_or(xtask_dir)
}
