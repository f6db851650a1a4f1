//! Test guest for the host's `cella:entity@0.1.0` compatibility: a value entity (a counter)
//! written with `wit-bindgen` against the frozen contract in `wit/0.1.0/`, not the SDK (which
//! follows the current contract). Commands: `add` (an integer payload; the state becomes
//! `{"total":N}` as JSON bytes and the reply is N; a payload of 0 also schedules a `get` through
//! a 0.1.0 `schedule` effect, to show 0.1.0 effects decode) and `get` (replies the total).

wit_bindgen::generate!({
    world: "entity-world",
    path: "../../../wit/0.1.0",
});

use cella::entity::types::{Context, Descriptor, Effect, EntityKind, Failure, Outcome, Timer};
use exports::cella::entity::entity::Guest;

struct Counter;

/// The total stored in `state` (0 for a new entity).
fn total(state: Option<&[u8]>) -> Result<i64, String> {
    let Some(bytes) = state else {
        return Ok(0);
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("state is not JSON: {e}"))?;
    value
        .get("total")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| "state has no integer `total`".to_string())
}

fn outcome(state: Option<Vec<u8>>, reply: String, effects: Vec<Effect>) -> Outcome {
    Outcome {
        events: Vec::new(),
        state,
        reply,
        forward: None,
        effects,
    }
}

impl Guest for Counter {
    fn describe() -> Descriptor {
        Descriptor {
            kind: EntityKind::Value,
            commands: vec!["add".into(), "get".into()],
            snapshot_every: 0,
        }
    }

    fn handle(ctx: Context, state: Option<Vec<u8>>, payload: String) -> Result<Outcome, Failure> {
        let current = total(state.as_deref()).map_err(Failure::Rejected)?;
        match ctx.command.as_str() {
            "add" => {
                let n: i64 = serde_json::from_str(&payload).map_err(|e| {
                    Failure::BadRequest(format!("command `add` takes an integer: {e}"))
                })?;
                let sum = current
                    .checked_add(n)
                    .ok_or_else(|| Failure::Rejected("the total would overflow".into()))?;
                let effects = if n == 0 {
                    vec![Effect::Schedule(Timer {
                        name: "recheck".into(),
                        delay_ms: 1000,
                        command: "get".into(),
                        payload: "null".into(),
                    })]
                } else {
                    Vec::new()
                };
                let state = serde_json::json!({ "total": sum }).to_string().into_bytes();
                Ok(outcome(Some(state), sum.to_string(), effects))
            }
            "get" => Ok(outcome(None, current.to_string(), Vec::new())),
            other => Err(Failure::UnknownCommand(other.into())),
        }
    }

    fn apply(_state: Option<Vec<u8>>, _event: Vec<u8>) -> Result<Vec<u8>, String> {
        Err("a value entity has no events".into())
    }

    fn render_state(state: Vec<u8>) -> Result<String, String> {
        String::from_utf8(state).map_err(|e| format!("state is not UTF-8: {e}"))
    }

    fn render_event(_event: Vec<u8>) -> Result<String, String> {
        Err("a value entity has no events".into())
    }
}

// Exported only for wasm: a host build of this crate (`cargo build --workspace`) links no
// component exports, whose names a native linker refuses.
#[cfg(target_arch = "wasm32")]
export!(Counter);
