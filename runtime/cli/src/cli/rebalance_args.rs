//! The flags of `cella serve` that set how placement follows load (the placement loop on the
//! metadata leader: partition leadership, `cella_cluster::rebalance`, and shards between
//! partitions, `cella_cluster::hot_shards`).

use std::time::Duration;

use cella_cluster::rebalance::RebalanceOptions;

/// Whether the placement loop moves leadership on its own.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rebalance {
    /// Moves leadership when the loads ask for it.
    On,
    /// Moves only when asked (`cella cluster rebalance`).
    Off,
}

#[derive(clap::Args, Debug)]
pub(super) struct RebalanceArgs {
    /// Move partition leadership toward nodes with spare CPU, and shards out of partitions
    /// that take far more writes than the others, on its own (`off`: only with `cella cluster
    /// rebalance`).
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = Rebalance::On)]
    rebalance: Rebalance,
    /// A node whose CPUs are less busy than this (0 to 1, by any process) is never relieved.
    #[arg(long, value_name = "FRACTION", default_value_t = RebalanceOptions::default().min_pressure)]
    rebalance_min_load: f64,
    /// How much less busy, as a fraction of the source's pressure, the CPUs a move's work lands
    /// on must be (negative: even busier ones, down to -1; for tests of the loop itself).
    #[arg(long, value_name = "FRACTION", default_value_t = RebalanceOptions::default().min_gain,
        hide = true, allow_negative_numbers = true)]
    rebalance_min_gain: f64,
    /// How often the loads are gathered and a move planned, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true,
        value_parser = clap::value_parser!(u64).range(50..))]
    rebalance_interval_ms: u64,
    /// Rounds in a row the same move must be planned before it is made.
    #[arg(long, value_name = "N", default_value_t = RebalanceOptions::default().confirm, hide = true)]
    rebalance_confirm: u32,
    /// At most one move per this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, hide = true)]
    rebalance_cooldown_secs: u64,
    /// Shards move out of a partition only when it takes at least this many writes/s (and
    /// 1.5× the partitions' mean).
    #[arg(long, value_name = "N", default_value_t = RebalanceOptions::default().min_shard_writes,
        hide = true)]
    rebalance_shard_min_writes: f64,
    /// Shards move out of a partition only when its leader uses at least this part of its
    /// CPUs itself (0 to 1).
    #[arg(long, value_name = "FRACTION", default_value_t = RebalanceOptions::default().shard_min_cpu,
        hide = true)]
    rebalance_shard_min_cpu: f64,
}

impl RebalanceArgs {
    /// The placement options these flags give.
    pub(super) fn options(&self) -> RebalanceOptions {
        RebalanceOptions {
            enabled: self.rebalance == Rebalance::On,
            interval: Duration::from_millis(self.rebalance_interval_ms),
            min_pressure: self.rebalance_min_load.max(0.0),
            min_gain: self.rebalance_min_gain.max(-1.0),
            confirm: self.rebalance_confirm.max(1),
            cooldown: Duration::from_secs(self.rebalance_cooldown_secs),
            min_shard_writes: self.rebalance_shard_min_writes.max(0.0),
            shard_min_cpu: self.rebalance_shard_min_cpu.max(0.0),
            ..RebalanceOptions::default()
        }
    }
}
