//! Test guest: the tally whose apply counts every amount twice (a divergent new version).

const FACTOR: i64 = 2;
const TRAP_ON_APPLY: bool = false;

#[path = "../../tally/src/entity.rs"]
mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
