//! Test guest: an event-sourced sum.

const FACTOR: i64 = 1;
const TRAP_ON_APPLY: bool = false;

#[path = "entity.rs"]
mod entity;

cella_sdk::export_entity!(event_sourced entity::Tally);
