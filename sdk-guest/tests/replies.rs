//! Calls with reply routes, timers and cancels through `TestKit` and the raw `entity` interface:
//! the effects as the host receives them, the correlation and timer a reply or firing command
//! sees, `CallReply` payloads, and the kit's pending timers.

use cella_sdk::bindings::cella::entity::types::{Context as WitContext, Effect as WitEffect};
use cella_sdk::bindings::exports::cella::entity::entity::Guest;
use cella_sdk::testing::{Call, Effect, Failure, TestKit, Timer};
use cella_sdk::{
    CallError, CallReply, Context, Deserialize, ExportedEntity, Rejection, Reply, Result,
    Serialize, Value, ValueEntity, json,
};

#[derive(Default, Serialize, Deserialize)]
struct Relay {
    log: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Command {
    Ask { to: String, correlation: String },
    Tell(String),
    Answered(CallReply<u64>),
    Tick,
    Repeat { every: u64 },
    Stop,
    Origin,
}

impl ValueEntity for Relay {
    type Command = Command;

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Ask { to, correlation } => {
                ctx.call_with_reply("counter", to, "get", &(), "answered", correlation);
            }
            Command::Tell(to) => ctx.call("counter", to, "add", &1),
            Command::Answered(reply) => {
                let Some(correlation) = ctx.correlation().map(str::to_owned) else {
                    return Err(Rejection::bad_request("not the reply route of a call"));
                };
                self.log.push(match reply {
                    CallReply::Ok(n) => format!("{correlation}:ok:{n}"),
                    CallReply::Error(e) => format!("{correlation}:{e}"),
                });
            }
            Command::Tick => {
                let timer = ctx.timer().unwrap_or("none").to_owned();
                self.log.push(format!("tick:{timer}"));
            }
            Command::Repeat { every } => {
                ctx.schedule("once", 5, "tick", &());
                ctx.schedule_every("tick", 10, every, "tick", &());
            }
            Command::Stop => ctx.cancel("tick"),
            Command::Origin => {
                return Ok(json!([ctx.correlation(), ctx.timer()]));
            }
        }
        Ok(json!(self.log))
    }
}

cella_sdk::export_entity!(value Relay);

type Glue = <Relay as ExportedEntity>::Glue;

#[test]
fn calls_carry_their_reply_routes() {
    let mut kit = TestKit::<Relay>::new();
    kit.handle("ask", json!({"to": "c1", "correlation": "q1"}))
        .ok();
    let asked = Call::new("counter", "c1", "get", json!(null)).with_reply("answered", "q1");
    assert_eq!(
        kit.last().map(|h| h.effects.clone()),
        Some(vec![Effect::Call(asked.clone())])
    );
    kit.handle("tell", json!("c2")).ok();
    let told = kit
        .last()
        .map(|h| h.calls().into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(
        told,
        Some(vec![Call::new("counter", "c2", "add", json!(1))])
    );

    // The outcome comes back to the reply route, with the correlation.
    assert_eq!(
        kit.answer(&asked, &CallReply::Ok(7)),
        Ok(json!(["q1:ok:7"]))
    );
    let rejected = CallReply::<u64>::Error(CallError::new("rejected", "no"));
    assert_eq!(
        kit.reply("answered", "q2", &rejected),
        Ok(json!(["q1:ok:7", "q2:rejected: no"]))
    );
    // A reply that is not a `CallReply` of the expected type is a bad request.
    assert!(matches!(
        kit.reply("answered", "q3", &CallReply::Ok("seven")),
        Err(Failure::BadRequest(_))
    ));
    assert!(matches!(
        kit.handle("answered", json!(7)),
        Err(Failure::BadRequest(_))
    ));
}

#[test]
fn commands_see_where_they_come_from() {
    let mut kit = TestKit::<Relay>::new();
    assert_eq!(kit.handle("origin", json!(null)), Ok(json!([null, null])));
    assert_eq!(
        kit.reply("origin", "x", &CallReply::Ok(json!(null))),
        Err(Failure::BadRequest(
            "command `origin`: invalid type: map, expected unit".into()
        ))
    );
    assert_eq!(
        kit.fire_as("t", "origin", json!(null)),
        Ok(json!([null, "t"]))
    );
}

#[test]
fn the_kit_keeps_pending_timers() {
    let mut kit = TestKit::<Relay>::new();
    kit.handle("repeat", json!({"every": 20})).ok();
    let timers: Vec<Timer> = kit
        .last()
        .map(|h| h.timers().into_iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        timers,
        [
            Timer {
                name: "once".into(),
                delay_ms: 5,
                every_ms: None,
                command: "tick".into(),
                payload: json!(null),
            },
            Timer {
                name: "tick".into(),
                delay_ms: 10,
                every_ms: Some(20),
                command: "tick".into(),
                payload: json!(null),
            },
        ]
    );
    assert_eq!(kit.timers().len(), 2);
    // A one-shot timer is gone once fired; a repeating one stays until cancelled.
    assert_eq!(kit.fire("once"), Ok(json!(["tick:once"])));
    assert_eq!(kit.fire("tick"), Ok(json!(["tick:once", "tick:tick"])));
    assert_eq!(
        kit.fire("tick").map(|v| v[2].clone()),
        Ok(json!("tick:tick"))
    );
    assert_eq!(kit.timers().keys().collect::<Vec<_>>(), ["tick"]);
    // Same name replaces.
    kit.handle("repeat", json!({"every": 50})).ok();
    assert_eq!(kit.timers()["tick"].every_ms, Some(50));
    kit.handle("stop", json!(null)).ok();
    assert_eq!(kit.last().map(|h| h.cancels()), Some(vec!["tick"]));
    assert_eq!(kit.timers().keys().collect::<Vec<_>>(), ["once"]);
}

fn wit_context(command: &str, correlation: Option<&str>, timer: Option<&str>) -> WitContext {
    WitContext {
        entity_type: "relay".into(),
        key: "k".into(),
        command_id: "id".into(),
        command: command.into(),
        timestamp_ms: 0,
        random_seed: 0,
        sequence: 0,
        correlation: correlation.map(str::to_owned),
        timer: timer.map(str::to_owned),
        message: None,
    }
}

#[test]
fn the_raw_interface_sees_the_wire_forms() {
    let Ok(outcome) = Glue::handle(
        wit_context("ask", None, None),
        None,
        r#"{"to":"c","correlation":"z"}"#.into(),
    ) else {
        panic!("ask failed")
    };
    let [WitEffect::Call(call)] = outcome.effects.as_slice() else {
        panic!("one call expected")
    };
    let route = call
        .reply_to
        .as_ref()
        .map(|r| (r.command.as_str(), r.correlation.as_str()));
    assert_eq!(route, Some(("answered", "z")));

    let Ok(outcome) = Glue::handle(wit_context("stop", None, None), None, "null".into()) else {
        panic!("stop failed")
    };
    assert!(matches!(outcome.effects.as_slice(), [WitEffect::Cancel(name)] if name == "tick"));

    let error = r#"{"error":{"code":"unknown_command","message":"unknown command `get`"}}"#;
    let Ok(outcome) = Glue::handle(wit_context("answered", Some("z"), None), None, error.into())
    else {
        panic!("answered failed")
    };
    let state: Value =
        serde_json::from_slice(outcome.state.as_deref().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        state,
        json!({"log": ["z:unknown_command: unknown command `get`"]})
    );

    let Ok(outcome) = Glue::handle(wit_context("origin", Some("c"), Some("t")), None, "".into())
    else {
        panic!("origin failed")
    };
    assert_eq!(outcome.reply, r#"["c","t"]"#);
}
