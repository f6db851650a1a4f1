//! Test guest: a value entity that reads the wall clock and a file — imports (`wasi:clocks`,
//! `wasi:filesystem`) the host links inert: the upload is accepted with warnings, the clock reads
//! zero and there are no files.

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json};

#[derive(Default, Serialize, Deserialize)]
pub struct Clock {
    pub last: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Now,
}

impl ValueEntity for Clock {
    type Command = Command;
    fn handle(&mut self, _cmd: Command, _ctx: &mut Context) -> Result<Reply> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let motd = std::fs::read_to_string("/etc/motd").unwrap_or_default();
        self.last = now;
        Ok(json!({ "now": now, "motd": motd.len() }))
    }
}

cella_sdk::export_entity!(value Clock);
