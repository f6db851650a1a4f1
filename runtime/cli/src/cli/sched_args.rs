//! The flags of `cella serve` that set the node-wide defaults of the guest scheduler (the fair
//! sharing of guest execution between entity types; a type's own limits come with its deploy).

use cella_node::scheduler::SchedulerOptions;

#[derive(clap::Args, Debug)]
pub(super) struct SchedulerArgs {
    /// Guest calls running at once on the node, shared fairly between entity types (0: one per
    /// CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    guest_capacity: usize,
    /// Default most guest calls of one type running at once (0: the guest capacity); a deploy's
    /// `--max-concurrent` overrides it for its type.
    #[arg(long, value_name = "N", default_value_t = 0)]
    type_max_concurrent: u32,
    /// Default weight of a type in the fair sharing; a deploy's `--cpu-share` overrides it.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    type_cpu_share: u32,
    /// Commands of one type waiting for a guest slot at most; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = SchedulerOptions::default().max_queued)]
    type_max_queued: usize,
}

impl SchedulerArgs {
    /// The scheduler's options these flags give.
    pub(super) fn options(&self) -> SchedulerOptions {
        SchedulerOptions {
            capacity: self.guest_capacity,
            max_concurrent: self.type_max_concurrent,
            cpu_share: self.type_cpu_share,
            max_queued: self.type_max_queued.max(1),
            ..SchedulerOptions::default()
        }
    }
}
