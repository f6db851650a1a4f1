//! `cargo xtask`: the workspace's developer tasks. This file owns the command line (clap);
//! each subcommand lives in its own module.

mod bench;
mod bench_capacity;
mod bench_crdt;
mod bench_effects;
mod bench_fairness;
mod bench_langs;
mod bench_listing;
mod bench_placement;
mod bench_topics;
mod build;
mod ci;
mod guest_calls;
mod http;
#[cfg(test)]
mod layering;
mod licenses;
mod sse;
mod tck;
#[cfg(test)]
mod tidy;
mod toolchains;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tck::Lang;

/// The workspace's developer tasks (`cargo xtask ci` runs every check and test)
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the guest components into target/components/
    ///
    /// The examples and the test guests, for wasm32-wasip2 with the `guest` profile, into
    /// target/components/<crate>.wasm; the TCK's Rust components also into
    /// target/components/rust/. Installs the wasm32-wasip2 target if it is missing.
    BuildExamples,
    /// build-examples, then every test of the workspace
    Test,
    /// Build and run the TCK (tests/tck/SPEC.md) for some or all guest languages
    ///
    /// Builds the TCK components of the chosen languages into target/components/<lang>/ with
    /// their SDK's build script, then runs the TCK suite against them. Installs a missing
    /// Python or JavaScript toolchain first (as `ci` does).
    Tck {
        /// The guest languages (repeatable or comma-separated) [default: all three]
        #[arg(long = "lang", value_name = "LANG", value_enum, value_delimiter = ',')]
        langs: Vec<Lang>,
    },
    /// Every check and test, installing missing toolchains first (what .ci/run runs)
    ///
    /// Installs what is missing first and says so: the wasm32-wasip2 target and the rustfmt and
    /// clippy components (rustup); componentize-py 0.25.1 in a virtualenv under
    /// target/toolchains/python (python3 -m venv, then pip) unless $COMPONENTIZE_PY or the
    /// componentize-py on PATH is that version; the JavaScript SDK's build tools (npm ci in
    /// sdk-guest/js when node_modules is missing or older than package-lock.json). Python 3 and
    /// Node.js 20+ themselves must be installed.
    ///
    /// Then: rustfmt check, the licence check (`licenses`), the guest build, clippy -D
    /// warnings, every test of the workspace (the tidy checks of xtask/src/tidy.rs among them),
    /// the Python and JavaScript SDKs' unit tests, and the TCK for Rust, Python and JavaScript.
    Ci,
    /// Check that every dependency's licence is compatible with Apache-2.0
    ///
    /// Every package of the resolved Cargo graph (all platforms, `cargo metadata`) and of
    /// sdk-guest/js/package-lock.json, against the allow-list and the exceptions of
    /// xtask/src/licenses.rs; the workspace's own packages must say Apache-2.0.
    Licenses,
    /// Build the examples and a release node, then serve them on one node
    ///
    /// Needs only Rust (the wasm32-wasip2 target is installed on demand). Data in ./.cella.
    Demo {
        /// The address the node listens on
        #[arg(default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Benchmark a dist-profile node or cluster with wrk, then the command path
    ///
    /// The durable-counter workload (POST .../add, 1,000 random keys and one hot key) against a
    /// node built with the `dist` profile, or a cluster of N nodes with one wrk per node:
    /// req/s, p50, p99, the counters' check and the nodes' CPU µs per request; then the effects
    /// part (transfer-saga call round trips through reply routes, and timers all due at one
    /// instant; `--effects-only` runs it alone); then the topics part (fan-out to subscriber
    /// entities, publish → Server-Sent Events latency, sustained publications/s;
    /// `--topics-only` runs it alone); then the languages part (the counter `cella new`
    /// scaffolds in Rust, Python and JavaScript, built, deployed and loaded side by side on one
    /// node; `--langs-only` runs it alone); then the listing part (the first page of a type of
    /// 100,000 entities, `GET /v1/entities/{type}`; `--listing-only` runs it alone); then the
    /// criterion micro-benchmark of the command path. `--capacity-only` runs the capacity part
    /// alone (idle RSS, memory per resident entity, cold activation; nodes of its own);
    /// `--fairness-only` the fairness part (counter throughput alone and beside clients
    /// driving a guest that loops until its deadline; a node of its own).
    #[command(after_help = "Environment:\n  \
        CELLA_BENCH_BIN=PATH          run that cella build instead (A/B comparisons in one sitting)\n  \
        CELLA_BENCH_SERVE_ARGS=ARGS   add `cella serve` arguments, e.g. `--replicas 1`")]
    Bench {
        /// Seconds per cell
        #[arg(long, value_name = "N", default_value_t = 10)]
        secs: u32,
        /// Connection counts, one cell each
        #[arg(
            long,
            value_name = "LIST",
            value_delimiter = ',',
            num_args = 1,
            default_value = "1,16,64"
        )]
        conns: Vec<u32>,
        /// Nodes: 1 runs a single node, more a cluster with 3 replicas per partition
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        nodes: u32,
        /// Skip the criterion micro-benchmark
        #[arg(long)]
        no_micro: bool,
        /// Authenticate peers by mutual TLS (certificates from `cella cluster certs`) instead
        /// of the cluster secret; clients (the bench's requests, wrk) then speak https:// too
        #[arg(long, requires = "nodes", conflicts_with = "topics_only")]
        peer_tls: bool,
        /// Skip the effects part (call round trips through reply routes, timers)
        #[arg(long, conflicts_with = "effects_only")]
        no_effects: bool,
        /// Run only the effects part (no wrk, no topics, no micro-benchmark)
        #[arg(long, conflicts_with = "langs_only")]
        effects_only: bool,
        /// Skip the topics part (fan-out, publish → SSE, sustained publications)
        #[arg(long, conflicts_with = "topics_only")]
        no_topics: bool,
        /// Run only the topics part (no wrk, no effects, no micro-benchmark)
        #[arg(long, conflicts_with_all = ["effects_only", "langs_only"])]
        topics_only: bool,
        /// Skip the languages part (the scaffolded counters in each language)
        #[arg(long, conflicts_with = "langs_only")]
        no_langs: bool,
        /// Run only the languages part (no wrk cells, no effects, no topics, no
        /// micro-benchmark); one node only
        #[arg(long)]
        langs_only: bool,
        /// Skip the listing part (pages of a type's entities)
        #[arg(long, conflicts_with = "listing_only")]
        no_listing: bool,
        /// Run only the listing part (no wrk cells, no effects, no topics, no languages, no
        /// micro-benchmark)
        #[arg(long, conflicts_with_all = ["effects_only", "topics_only", "langs_only"])]
        listing_only: bool,
        /// Listing part: entities created before the pages are timed
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        listing_entities: u32,
        /// Run only the capacity part: idle node RSS (fresh, with the example counters), memory
        /// per resident small entity, cold activation latency (value, event-sourced)
        #[arg(long, conflicts_with_all = ["effects_only", "topics_only", "langs_only", "listing_only"])]
        capacity_only: bool,
        /// Capacity part: counters made resident for the memory per entity (enough for the
        /// store's page cache to be full by the second half, whose growth is reported)
        #[arg(long, value_name = "N", default_value_t = 400_000)]
        capacity_entities: u32,
        #[command(flatten)]
        fairness: bench_fairness::Args,
        #[command(flatten)]
        crdt: bench_crdt::Args,
        #[command(flatten)]
        placement: bench_placement::Args,
        /// Languages part: the guest languages (comma-separated) [default: all three]
        #[arg(
            long = "langs",
            value_name = "LIST",
            value_enum,
            value_delimiter = ',',
            num_args = 1,
            conflicts_with = "no_langs"
        )]
        langs: Vec<Lang>,
        /// Effects part: transfers (2 call round trips each)
        #[arg(long, value_name = "N", default_value_t = 2000)]
        transfers: u32,
        /// Effects part: timers, one per key, all due at one instant
        #[arg(long, value_name = "N", default_value_t = 10000)]
        timers: u32,
        /// Effects part: concurrent clients; topics part: wrk connections of the sustained run
        #[arg(long, value_name = "N", default_value_t = 64,
              value_parser = clap::value_parser!(u32).range(1..))]
        clients: u32,
        /// Topics part: entities one fan-out message is addressed to
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..))]
        fanout: u32,
        /// Topics part: fan-out messages timed (and 4× as many publish → SSE messages)
        #[arg(long, value_name = "N", default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
    },
}

fn run(task: Task) -> anyhow::Result<()> {
    match &task {
        Task::BuildExamples => build::build_examples().map(|_| ()),
        Task::Test => ci::test(),
        Task::Tck { langs } => tck::tck(&Lang::selection(langs)),
        Task::Ci => ci::ci(),
        Task::Licenses => licenses::check(&workspace_root()),
        Task::Demo { addr } => ci::demo(addr),
        Task::Bench {
            secs,
            conns,
            nodes,
            no_micro,
            ..
        } => bench::run(*secs, conns, !no_micro, *nodes, bench_parts(&task)),
    }
}

/// The parts `cargo xtask bench` runs with the flags of `task` (none for another task).
fn bench_parts(task: &Task) -> bench::Parts {
    let Task::Bench {
        secs,
        peer_tls,
        no_effects,
        effects_only,
        no_topics,
        topics_only,
        no_langs,
        langs_only,
        no_listing,
        listing_only,
        listing_entities,
        capacity_only,
        capacity_entities,
        fairness,
        crdt,
        placement,
        langs,
        transfers,
        timers,
        clients,
        fanout,
        rounds,
        ..
    } = task
    else {
        return bench::Parts::default();
    };
    let (secs, clients) = (*secs, *clients);
    if let Some(parts) = crdt.parts(secs, clients) {
        return parts;
    }
    if let Some(parts) = placement.parts(clients) {
        return parts;
    }
    if let Some(parts) = fairness.parts(secs, clients) {
        return parts;
    }
    if *capacity_only {
        return bench::Parts {
            capacity: Some(bench_capacity::Options {
                entities: *capacity_entities,
                clients,
            }),
            ..bench::Parts::default()
        };
    }
    bench::Parts {
        wrk: !effects_only && !topics_only && !langs_only && !listing_only,
        effects: (!no_effects && !topics_only && !langs_only && !listing_only).then_some(
            bench_effects::Options {
                transfers: *transfers,
                timers: *timers,
                clients,
            },
        ),
        topics: (!no_topics && !effects_only && !langs_only && !listing_only).then_some(
            bench_topics::Options {
                fanout: *fanout,
                rounds: *rounds,
                publishers: clients,
                secs,
            },
        ),
        langs: (!no_langs && !effects_only && !topics_only && !listing_only).then(|| {
            bench_langs::Options {
                langs: Lang::selection(langs),
                secs,
            }
        }),
        listing: (!no_listing && !effects_only && !topics_only && !langs_only).then_some(
            bench_listing::Options {
                entities: *listing_entities,
                clients,
            },
        ),
        peer_tls: *peer_tls,
        ..bench::Parts::default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map(PathBuf::from).unwrap_or(xtask_dir)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn languages_from_arguments() {
        let langs = |args: &[&str]| match parse(args) {
            Ok(Task::Tck { langs }) => Some(Lang::selection(&langs)),
            _ => None,
        };
        assert_eq!(langs(&["tck"]), Some(Lang::ALL.to_vec()));
        assert_eq!(
            langs(&["tck", "--lang", "js", "--lang=rust"]),
            Some(vec![Lang::Rust, Lang::Js])
        );
        assert_eq!(
            langs(&["tck", "--lang", "python,python"]),
            Some(vec![Lang::Python])
        );
        assert_eq!(langs(&["tck", "--lang", "go"]), None);
        assert_eq!(langs(&["tck", "--lang"]), None);
        assert_eq!(langs(&["tck", "rust"]), None);
    }

    #[test]
    fn bench_options() {
        let Ok(Task::Bench {
            secs,
            conns,
            nodes,
            no_micro,
            peer_tls,
            no_effects,
            effects_only,
            no_topics,
            topics_only,
            no_langs,
            langs_only,
            no_listing,
            listing_only,
            listing_entities,
            capacity_only,
            capacity_entities,
            fairness,
            crdt: _,
            placement: _,
            langs,
            transfers,
            timers,
            clients,
            fanout,
            rounds,
        }) = parse(&["bench"])
        else {
            panic!("`bench` does not parse");
        };
        assert_eq!(
            (secs, conns, nodes, no_micro, peer_tls),
            (10, vec![1, 16, 64], 1, false, false)
        );
        assert_eq!(
            (no_effects, effects_only, transfers, timers, clients),
            (false, false, 2000, 10000, 64)
        );
        assert_eq!(
            (no_topics, topics_only, fanout, rounds),
            (false, false, 100, 50)
        );
        assert_eq!((no_langs, langs_only), (false, false));
        assert_eq!(
            (no_listing, listing_only, listing_entities),
            (false, false, 100_000)
        );
        assert_eq!((capacity_only, capacity_entities), (false, 400_000));
        assert_eq!(
            (fairness.fairness_only, fairness.fairness_loopers),
            (false, 4)
        );
        assert_eq!(Lang::selection(&langs), Lang::ALL.to_vec());
        let Ok(Task::Bench {
            secs,
            conns,
            nodes,
            no_micro,
            ..
        }) = parse(&[
            "bench",
            "--secs",
            "3",
            "--conns",
            "8,32",
            "--nodes",
            "3",
            "--no-micro",
        ])
        else {
            panic!("`bench` with options does not parse");
        };
        assert_eq!((secs, conns, nodes, no_micro), (3, vec![8, 32], 3, true));
        assert!(parse(&["bench", "--nodes", "0"]).is_err());
        assert!(matches!(
            parse(&["bench", "--nodes", "3", "--peer-tls"]),
            Ok(Task::Bench {
                peer_tls: true,
                nodes: 3,
                ..
            })
        ));
        assert!(parse(&["bench", "--peer-tls"]).is_err());
        assert!(parse(&["bench", "--conns", "x"]).is_err());
        let Ok(Task::Bench {
            effects_only,
            transfers,
            timers,
            clients,
            ..
        }) = parse(&[
            "bench",
            "--effects-only",
            "--transfers",
            "500",
            "--timers",
            "100",
            "--clients",
            "8",
        ])
        else {
            panic!("`bench --effects-only` does not parse");
        };
        assert_eq!(
            (effects_only, transfers, timers, clients),
            (true, 500, 100, 8)
        );
        assert!(parse(&["bench", "--effects-only", "--no-effects"]).is_err());
        assert!(parse(&["bench", "--clients", "0"]).is_err());
        let Ok(Task::Bench {
            topics_only,
            no_topics,
            fanout,
            rounds,
            ..
        }) = parse(&["bench", "--topics-only", "--fanout", "10", "--rounds", "5"])
        else {
            panic!("`bench --topics-only` does not parse");
        };
        assert_eq!(
            (topics_only, no_topics, fanout, rounds),
            (true, false, 10, 5)
        );
        assert!(parse(&["bench", "--topics-only", "--no-topics"]).is_err());
        assert!(parse(&["bench", "--topics-only", "--effects-only"]).is_err());
        assert!(parse(&["bench", "--fanout", "0"]).is_err());
        let Ok(Task::Bench {
            langs_only,
            no_langs,
            langs,
            secs,
            ..
        }) = parse(&["bench", "--langs-only", "--langs", "js,rust", "--secs", "5"])
        else {
            panic!("`bench --langs-only --langs js,rust` does not parse");
        };
        assert_eq!(
            (langs_only, no_langs, Lang::selection(&langs), secs),
            (true, false, vec![Lang::Rust, Lang::Js], 5)
        );
        assert!(matches!(
            parse(&["bench", "--no-langs"]),
            Ok(Task::Bench {
                no_langs: true,
                langs_only: false,
                ..
            })
        ));
        assert!(parse(&["bench", "--langs-only", "--no-langs"]).is_err());
        assert!(parse(&["bench", "--langs-only", "--effects-only"]).is_err());
        assert!(parse(&["bench", "--langs-only", "--topics-only"]).is_err());
        assert!(parse(&["bench", "--no-langs", "--langs", "python"]).is_err());
        assert!(parse(&["bench", "--langs", "go"]).is_err());
        assert!(parse(&["bench", "--langs"]).is_err());
    }

    /// Which parts `bench` runs, from its flags.
    #[test]
    fn bench_parts_from_flags() {
        let parts = |args: &[&str]| parse(args).ok().map(|task| bench_parts(&task));
        let Some(all) = parts(&["bench", "--secs", "3"]) else {
            panic!("`bench --secs 3` does not parse");
        };
        assert!(all.wrk && all.effects.is_some() && all.topics.is_some() && !all.peer_tls);
        assert_eq!(
            all.langs,
            Some(bench_langs::Options {
                langs: Lang::ALL.to_vec(),
                secs: 3
            })
        );
        let Some(only) = parts(&["bench", "--langs-only", "--langs", "python"]) else {
            panic!("`bench --langs-only --langs python` does not parse");
        };
        assert!(!only.wrk && only.effects.is_none() && only.topics.is_none());
        assert_eq!(
            only.langs.map(|l| (l.langs, l.secs)),
            Some((vec![Lang::Python], 10))
        );
        let Some(none) = parts(&["bench", "--no-langs"]) else {
            panic!("`bench --no-langs` does not parse");
        };
        assert!(none.wrk && none.effects.is_some() && none.topics.is_some());
        assert_eq!(none.langs, None);
        for other in [
            &["bench", "--effects-only"][..],
            &["bench", "--topics-only"],
        ] {
            assert_eq!(parts(other).map(|p| p.langs), Some(None), "{other:?}");
        }
        let Some(listing) = parts(&["bench", "--listing-only", "--listing-entities", "500"]) else {
            panic!("`bench --listing-only` does not parse");
        };
        assert!(!listing.wrk && listing.effects.is_none() && listing.topics.is_none());
        assert_eq!(listing.langs, None);
        assert_eq!(
            listing.listing,
            Some(bench_listing::Options {
                entities: 500,
                clients: 64
            })
        );
        assert!(all.listing.is_some() && only.listing.is_none());
        assert_eq!(
            parts(&["bench", "--no-listing"]).map(|p| p.listing),
            Some(None)
        );
        assert!(parse(&["bench", "--listing-only", "--effects-only"]).is_err());
        let capacity = parts(&["bench", "--capacity-only", "--capacity-entities", "50"]);
        assert_eq!(
            capacity,
            Some(bench::Parts {
                capacity: Some(bench_capacity::Options {
                    entities: 50,
                    clients: 64
                }),
                ..bench::Parts::default()
            })
        );
        assert_eq!(all.capacity, None);
        let fairness = parts(&["bench", "--fairness-only", "--fairness-loopers", "2"]);
        assert_eq!(
            fairness.and_then(|p| p.fairness).map(|o| o.loopers),
            Some(2)
        );
        assert_eq!(parts(&["demo"]), Some(bench::Parts::default()));
    }

    #[test]
    fn demo_address() {
        assert!(matches!(parse(&["demo"]), Ok(Task::Demo { addr }) if addr == "127.0.0.1:8080"));
        assert!(
            matches!(parse(&["demo", "0.0.0.0:9000"]), Ok(Task::Demo { addr }) if addr == "0.0.0.0:9000")
        );
        assert!(parse(&["ci", "extra"]).is_err());
        assert!(parse(&[]).is_err());
    }
}
