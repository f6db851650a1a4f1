//! The export glue of event-sourced entities: emitted events, the folded state returned with
//! them, the `apply` and `apply-all` exports the host uses to rebuild state, and rejections
//! discarding events.

use cella_sdk::bindings::cella::entity::types::{Context as WitContext, EntityKind};
use cella_sdk::bindings::exports::cella::entity::entity::Guest;
use cella_sdk::bindings::exports::cella::entity::fold::Guest as _;
use cella_sdk::testing::{Failure, TestKit};
use cella_sdk::{
    Deserialize, EventContext, EventSourcedEntity, ExportedEntity, Reply, Result, Serialize, json,
    reject,
};

#[derive(Default, Serialize, Deserialize)]
struct Tally {
    marks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Command {
    Mark(Vec<String>),
    Count,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Event {
    Marked { label: String },
}

impl EventSourcedEntity for Tally {
    type Command = Command;
    type Event = Event;
    const SNAPSHOT_EVERY: u32 = 50;

    fn handle(&self, cmd: Command, ctx: &mut EventContext<Event>) -> Result<Reply> {
        match cmd {
            Command::Mark(labels) => {
                for label in labels {
                    if label.is_empty() {
                        reject!("empty label after {} marks", ctx.emitted().len());
                    }
                    ctx.emit(Event::Marked { label });
                }
                let count = ctx.emitted().len();
                ctx.publish("marks", &count);
                Ok(json!({}))
            }
            Command::Count => Ok(json!(self.marks.len())),
        }
    }

    fn apply(&mut self, Event::Marked { label }: Event) {
        self.marks.push(label);
    }
}

cella_sdk::export_entity!(event_sourced Tally);

type Glue = <Tally as ExportedEntity>::Glue;

#[test]
fn describes_an_event_sourced_entity() {
    let descriptor = Glue::describe();
    assert_eq!(descriptor.kind, EntityKind::EventSourced);
    assert_eq!(descriptor.commands, ["mark", "count"]);
    assert_eq!(descriptor.snapshot_every, 50);
    // No subscriptions and no events topic unless declared.
    assert!(descriptor.subscriptions.is_empty());
    assert_eq!(descriptor.events_topic, None);
}

#[test]
fn events_are_persisted_and_folded() {
    let mut kit = TestKit::<Tally>::new();
    assert_eq!(kit.handle("mark", json!(["a", "b"])), Ok(json!({})));
    let Some(handled) = kit.last() else {
        panic!("mark failed")
    };
    assert_eq!(
        handled.events,
        [
            json!({"marked": {"label": "a"}}),
            json!({"marked": {"label": "b"}})
        ]
    );
    assert!(handled.persisted);
    assert_eq!(handled.effects.len(), 1);
    assert_eq!(kit.handle("count", json!(null)), Ok(json!(2)));
    assert_eq!(kit.last().map(|h| h.persisted), Some(false));
    assert_eq!(kit.sequence(), 1);
    assert_eq!(kit.events().len(), 2);
    assert_eq!(kit.state().marks, ["a", "b"]);
}

#[test]
fn rejections_discard_emitted_events_and_effects() {
    let mut kit = TestKit::<Tally>::new();
    assert_eq!(
        kit.handle("mark", json!(["a", ""])),
        Err(Failure::Rejected("empty label after 1 marks".into()))
    );
    assert!(kit.events().is_empty());
    assert_eq!(kit.sequence(), 0);
    assert_eq!(kit.state_json(), None);
}

#[test]
fn the_raw_interface_returns_events_and_the_fold() {
    let ctx = WitContext {
        entity_type: "tally".into(),
        key: "k".into(),
        command_id: "id".into(),
        command: "mark".into(),
        timestamp_ms: 0,
        random_seed: 0,
        sequence: 0,
        correlation: None,
        timer: None,
        message: None,
    };
    let Ok(outcome) = Glue::handle(ctx, None, r#"["x"]"#.into()) else {
        panic!("mark failed")
    };
    assert_eq!(outcome.events, [br#"{"marked":{"label":"x"}}"#.to_vec()]);
    assert_eq!(outcome.state.as_deref(), Some(&br#"{"marks":["x"]}"#[..]));

    // `apply` as the host calls it: no state yet, then an existing state.
    let Ok(one) = Glue::apply(None, outcome.events[0].clone()) else {
        panic!("apply failed")
    };
    assert_eq!(one, br#"{"marks":["x"]}"#);
    let Ok(two) = Glue::apply(Some(one), br#"{"marked":{"label":"y"}}"#.to_vec()) else {
        panic!("apply failed");
    };
    assert_eq!(two, br#"{"marks":["x","y"]}"#);
    assert!(
        Glue::apply(None, b"{}".to_vec()).is_err_and(|e| e.contains("cannot decode the event"))
    );

    assert_eq!(
        Glue::render_event(br#"{"marked":{"label":"y"}}"#.to_vec())
            .ok()
            .as_deref(),
        Some(r#"{"marked":{"label":"y"}}"#)
    );
    assert!(Glue::render_event(b"{}".to_vec()).is_err());

    // `apply-all`: the same state as `apply` per event, in one call.
    let marked = |label: &str| format!(r#"{{"marked":{{"label":"{label}"}}}}"#).into_bytes();
    let Ok(all) = Glue::apply_all(None, vec![marked("x"), marked("y")]) else {
        panic!("apply-all failed")
    };
    assert_eq!(all, br#"{"marks":["x","y"]}"#);
    let Ok(more) = Glue::apply_all(Some(all), vec![marked("z")]) else {
        panic!("apply-all failed")
    };
    assert_eq!(more, br#"{"marks":["x","y","z"]}"#);
    assert!(
        Glue::apply_all(None, vec![marked("x"), b"{}".to_vec()])
            .is_err_and(|e| e.contains("cannot decode the event"))
    );
}
