//! Test guest: the tally whose apply counts every amount twice (a divergent new version).

pub const FACTOR: i64 = 2;
pub const TRAP_ON_APPLY: bool = false;

#[path = "../../tally/src/entity.rs"]
pub mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
