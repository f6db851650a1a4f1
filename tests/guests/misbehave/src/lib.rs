//! Test guest for the runtime's failure handling: a value entity (a counter) whose commands
//! behave (`ok`), trap (`trap`), never return (`spin`), allocate memory without bound
//! (`balloon`), grow the instance's memory and succeed (`grow`, payload: MiB) or leave garbage
//! in it (`leak`, payload: MiB). The others take the payload `null`.

use std::hint::black_box;

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json};

#[derive(Default, Serialize, Deserialize)]
pub struct Misbehave {
    pub count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Increments the count and replies it.
    Ok,
    /// Panics: the component traps.
    Trap,
    /// Loops forever.
    Spin,
    /// Allocates 1 MiB chunks, touching every page, until memory runs out.
    Balloon,
    /// Allocates this many MiB, touching every page, frees them and replies the count: the
    /// instance's linear memory stays grown (it never shrinks).
    Grow(u32),
    /// Allocates this many MiB, touching every page, and never frees them (garbage that stays
    /// in a reused instance); replies the count.
    Leak(u32),
}

/// The size of one `balloon` allocation.
const CHUNK: usize = 1 << 20;
/// The wasm page size: touching one byte per page commits the page.
const PAGE: usize = 1 << 16;

impl ValueEntity for Misbehave {
    type Command = Command;

    fn handle(&mut self, cmd: Command, _ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Ok => {
                self.count = self.count.wrapping_add(1);
                Ok(json!(self.count))
            }
            Command::Trap => panic!("misbehave: trap requested"),
            Command::Spin => {
                let mut turns = 0u64;
                loop {
                    turns = black_box(turns.wrapping_add(1));
                }
            }
            Command::Balloon => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; CHUNK];
                    for offset in (0..CHUNK).step_by(PAGE) {
                        chunk[offset] = black_box(1);
                    }
                    chunks.push(black_box(chunk));
                }
            }
            Command::Grow(mib) => {
                let size = (mib as usize).saturating_mul(CHUNK);
                let mut block = vec![0u8; size];
                for offset in (0..size).step_by(PAGE) {
                    block[offset] = black_box(1);
                }
                drop(black_box(block));
                Ok(json!(self.count))
            }
            Command::Leak(mib) => {
                let size = (mib as usize).saturating_mul(CHUNK);
                let mut block = vec![0u8; size];
                for offset in (0..size).step_by(PAGE) {
                    block[offset] = black_box(1);
                }
                std::mem::forget(black_box(block));
                Ok(json!(self.count))
            }
        }
    }
}

cella_sdk::export_entity!(value Misbehave);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::TestKit;

    use super::Misbehave;

    #[test]
    fn ok_counts() {
        let mut kit = TestKit::<Misbehave>::new();
        assert_eq!(
            kit.commands(),
            ["ok", "trap", "spin", "balloon", "grow", "leak"]
        );
        assert_eq!(kit.handle("ok", json!(null)), Ok(json!(1)));
        assert_eq!(kit.handle("ok", json!(null)), Ok(json!(2)));
    }

    #[test]
    #[should_panic(expected = "trap requested")]
    fn trap_panics() {
        TestKit::<Misbehave>::new().handle("trap", json!(null)).ok();
    }
}
