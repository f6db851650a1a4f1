//! Test guest: the tally whose apply traps (a version that cannot replay).

pub const FACTOR: i64 = 1;
pub const TRAP_ON_APPLY: bool = true;

#[path = "../../tally/src/entity.rs"]
pub mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
