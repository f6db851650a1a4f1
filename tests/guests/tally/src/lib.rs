//! Test guest: an event-sourced sum.

pub const FACTOR: i64 = 1;
pub const TRAP_ON_APPLY: bool = false;

#[path = "entity.rs"]
pub mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
