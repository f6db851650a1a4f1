//! Test guest: the tally whose apply traps (a version that cannot replay).

const FACTOR: i64 = 1;
const TRAP_ON_APPLY: bool = true;

#[path = "../../tally/src/entity.rs"]
mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
