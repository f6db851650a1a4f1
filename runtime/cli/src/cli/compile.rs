//! `cella __compile` (hidden): the child process a node compiles components in (see
//! `cella_node::compiler`). It reads a component on stdin and answers its precompiled artifact
//! on stdout, with a host configured by the flags the node passes (`compiler::child_args`), so
//! that the artifact fits the node's engine.

use std::time::Duration;

use anyhow::Context;

use cella_node::compiler;

// No doc comment on the struct: clap would take it as the command's about.
#[derive(clap::Args, Debug)]
pub(super) struct CompileArgs {
    /// The host's per-call deadline, in nanoseconds.
    #[arg(long)]
    deadline_ns: u64,
    /// The host's memory limit per instance, in bytes.
    #[arg(long)]
    memory_limit: usize,
    /// The host's most instances alive at once.
    #[arg(long)]
    max_instances: u32,
}

/// Compiles the component on stdin (see [`compiler::run_child`]).
pub(super) async fn run(args: CompileArgs) -> anyhow::Result<()> {
    let config = compiler::HostConfig {
        deadline: Duration::from_nanos(args.deadline_ns),
        memory_limit: args.memory_limit,
        max_instances: args.max_instances,
    };
    compiler::run_child(config)
        .await
        .context("cannot exchange the component and its artifact with the node")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The flags the node passes are the flags this command takes, and give back the config.
    #[test]
    fn child_args_round_trip() {
        let config = compiler::HostConfig {
            deadline: Duration::from_nanos(1_234_567_891),
            memory_limit: 48 << 20,
            max_instances: 17,
        };
        let mut argv = vec!["cella".to_string(), compiler::SUBCOMMAND.to_string()];
        argv.extend(compiler::child_args(&config));
        let cli = super::super::Cli::try_parse_from(argv).unwrap();
        let super::super::Command::Compile(args) = cli.command else {
            panic!("not the compile command");
        };
        assert_eq!(Duration::from_nanos(args.deadline_ns), config.deadline);
        assert_eq!(args.memory_limit, config.memory_limit);
        assert_eq!(args.max_instances, config.max_instances);
    }
}
