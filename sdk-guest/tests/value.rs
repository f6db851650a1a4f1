//! The export glue of value entities, driven through `TestKit` and the raw `entity` interface:
//! persistence only on change, rejections, effects and forwards, and the context the handler sees.

use cella_sdk::bindings::cella::entity::types::{
    Context as WitContext, EntityKind, Failure as WitFailure,
};
use cella_sdk::bindings::exports::cella::entity::entity::Guest;
use cella_sdk::testing::{Call, Effect, Failure, TestKit, Timer};
use cella_sdk::{
    Context, Deserialize, ExportedEntity, Reply, Result, Serialize, ValueEntity, json, reject,
};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
    history: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Command {
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
    Balance,
    Whoami,
    Notify(String),
    Delegate,
    Roll,
}

impl ValueEntity for Account {
    type Command = Command;

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Deposit { amount } => {
                self.balance += amount;
                self.history
                    .push(format!("{}: +{amount}", ctx.command_id()));
            }
            Command::Withdraw { amount } => {
                if amount > self.balance {
                    // Changes made before a rejection are discarded.
                    self.balance = 0;
                    reject!(
                        "insufficient funds: balance {}, requested {amount}",
                        self.balance
                    );
                }
                self.balance -= amount;
            }
            Command::Balance => {}
            Command::Whoami => {
                return Ok(json!({
                    "type": ctx.entity_type(), "key": ctx.key(), "command": ctx.command(),
                    "time": ctx.timestamp_ms(), "sequence": ctx.sequence(),
                }));
            }
            Command::Notify(topic) => {
                ctx.publish(topic, &json!({"balance": self.balance}));
                ctx.call("audit", ctx.key().to_owned(), "record", &self.balance);
                ctx.schedule("reminder", 1_000, "balance", &());
            }
            Command::Delegate => {
                ctx.forward("ledger", "main", "balance", &());
                return Ok(json!("ignored"));
            }
            Command::Roll => return Ok(json!([ctx.random_u64(), ctx.random_u64()])),
        }
        Ok(json!(self.balance))
    }
}

cella_sdk::export_entity!(value Account);

type Glue = <Account as ExportedEntity>::Glue;

#[test]
fn describes_a_value_entity() {
    let descriptor = Glue::describe();
    assert_eq!(descriptor.kind, EntityKind::Value);
    assert_eq!(
        descriptor.commands,
        [
            "deposit", "withdraw", "balance", "whoami", "notify", "delegate", "roll"
        ]
    );
    assert_eq!(descriptor.snapshot_every, 0);
    assert!(descriptor.subscriptions.is_empty());
    assert_eq!(descriptor.events_topic, None);
}

#[test]
fn persists_only_changes() {
    let mut kit = TestKit::<Account>::new();
    assert_eq!(kit.handle("balance", json!(null)), Ok(json!(0)));
    assert_eq!(kit.last().map(|h| h.persisted), Some(false));
    assert_eq!(kit.state_json(), None);

    assert_eq!(kit.handle("deposit", json!({"amount": 10})), Ok(json!(10)));
    assert_eq!(kit.last().map(|h| h.persisted), Some(true));
    assert_eq!(kit.handle("balance", json!(null)), Ok(json!(10)));
    assert_eq!(kit.last().map(|h| h.persisted), Some(false));
    assert_eq!(kit.sequence(), 1);
    assert_eq!(
        kit.state_json(),
        Some(json!({"balance": 10, "history": ["test-command-2: +10"]}))
    );
}

#[test]
fn rejections_discard_changes() {
    let mut kit = TestKit::<Account>::new();
    kit.handle("deposit", json!({"amount": 5})).ok();
    assert_eq!(
        kit.handle("withdraw", json!({"amount": 6})),
        Err(Failure::Rejected(
            "insufficient funds: balance 0, requested 6".into()
        ))
    );
    assert!(kit.last().is_none());
    assert_eq!(kit.state().balance, 5);
    assert_eq!(kit.sequence(), 1);
}

#[test]
fn reports_unknown_commands_and_bad_payloads() {
    let mut kit = TestKit::<Account>::new();
    assert_eq!(
        kit.handle("close", json!(null)),
        Err(Failure::UnknownCommand("close".into()))
    );
    let Err(Failure::BadRequest(msg)) = kit.handle("deposit", json!({"amount": -1})) else {
        panic!("expected a bad request");
    };
    assert!(msg.starts_with("command `deposit`:"), "{msg}");
    assert!(matches!(
        kit.handle("balance", json!(1)),
        Err(Failure::BadRequest(_))
    ));
}

#[test]
fn the_handler_sees_the_host_context() {
    let mut kit = TestKit::<Account>::with_address("account", "alice");
    kit.set_time(42);
    kit.handle("deposit", json!({"amount": 1})).ok();
    assert_eq!(
        kit.handle("whoami", json!(null)),
        Ok(
            json!({"type": "account", "key": "alice", "command": "whoami", "time": 42, "sequence": 1})
        )
    );
    let (Ok(a), Ok(b)) = (
        kit.handle("roll", json!(null)),
        kit.handle("roll", json!(null)),
    ) else {
        panic!("roll failed");
    };
    assert_ne!(a, b, "each command has its own seed");
    assert_ne!(a[0], a[1], "numbers within a command differ");
}

#[test]
fn collects_effects_and_forwards() {
    let mut kit = TestKit::<Account>::with_address("account", "bob");
    kit.handle("notify", json!("balances")).ok();
    let Some(handled) = kit.last() else {
        panic!("notify failed")
    };
    assert_eq!(
        handled.effects,
        [
            Effect::Publish {
                topic: "balances".into(),
                payload: json!({"balance": 0})
            },
            Effect::Call(Call::new("audit", "bob", "record", json!(0))),
            Effect::Schedule(Timer {
                name: "reminder".into(),
                delay_ms: 1_000,
                every_ms: None,
                command: "balance".into(),
                payload: json!(null),
            }),
        ]
    );
    assert!(!handled.persisted);

    kit.handle("delegate", json!(null)).ok();
    let forward = kit.last().and_then(|h| h.forward.clone());
    assert_eq!(
        forward,
        Some(Call::new("ledger", "main", "balance", json!(null)))
    );
}

fn wit_context(command: &str) -> WitContext {
    WitContext {
        entity_type: "account".into(),
        key: "k".into(),
        command_id: "id".into(),
        command: command.into(),
        timestamp_ms: 0,
        random_seed: 0,
        sequence: 3,
        correlation: None,
        timer: None,
        message: None,
    }
}

#[test]
fn the_raw_interface_handles_stored_bytes() {
    let state = br#"{"balance":7,"history":[]}"#.to_vec();
    let Ok(outcome) = Glue::handle(
        wit_context("deposit"),
        Some(state),
        r#"{"amount":1}"#.into(),
    ) else {
        panic!("deposit failed");
    };
    assert_eq!(outcome.reply, "8");
    assert!(outcome.events.is_empty());
    assert_eq!(
        outcome.state.as_deref(),
        Some(&br#"{"balance":8,"history":["id: +1"]}"#[..])
    );

    // A stored state that does not decode fails the command.
    let bad = Glue::handle(wit_context("balance"), Some(b"[1]".to_vec()), "null".into());
    assert!(
        matches!(bad, Err(WitFailure::Rejected(m)) if m.starts_with("entity error: cannot decode the state"))
    );

    assert_eq!(
        Glue::render_state(br#"{"balance":1,"history":[]}"#.to_vec())
            .ok()
            .as_deref(),
        Some(r#"{"balance":1,"history":[]}"#)
    );
    assert!(Glue::render_state(b"nope".to_vec()).is_err());
    assert!(Glue::apply(None, b"{}".to_vec()).is_err());
    assert!(Glue::render_event(b"{}".to_vec()).is_err());
}
