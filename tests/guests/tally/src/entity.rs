//! The tally entity shared by the `tally*` test guests: an event-sourced sum whose `apply`
//! multiplies each added amount by the including crate's `FACTOR` and traps when
//! `TRAP_ON_APPLY` is set. The variants let tests produce a diverging or a trapping replay.

use cella_sdk::{Deserialize, EventContext, EventSourcedEntity, Reply, Result, Serialize, json};

#[derive(Default, Serialize, Deserialize)]
pub struct Tally {
    pub total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Add(i64),
    Get,
}

#[derive(Serialize, Deserialize)]
pub struct Added(pub i64);

impl EventSourcedEntity for Tally {
    type Command = Command;
    type Event = Added;

    fn handle(&self, cmd: Command, ctx: &mut EventContext<Added>) -> Result<Reply> {
        match cmd {
            Command::Add(n) => {
                ctx.emit(Added(n));
                Ok(json!(self.total + n * super::FACTOR))
            }
            Command::Get => Ok(json!(self.total)),
        }
    }

    fn apply(&mut self, event: Added) {
        if std::hint::black_box(super::TRAP_ON_APPLY) {
            panic!("this version cannot replay its journal");
        }
        self.total += event.0 * super::FACTOR;
    }
}
