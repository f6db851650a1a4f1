//! The transfer saga's paths, driven through the SDK's test kit: the calls it makes with their
//! reply routes, its timeout timer, and every answer (in time, late, repeated, or forged).

use cella_sdk::testing::{Call, Effect, Failure, TestKit, Timer};
use cella_sdk::{CallError, CallReply, Value, json};

use super::{DEFAULT_TIMEOUT_MS, Transfer};

const ID: &str = "t-1";

fn kit() -> TestKit<Transfer> {
    TestKit::with_address("transfer", ID)
}

fn ok() -> CallReply<Value> {
    CallReply::Ok(json!({"balance": 0}))
}

fn rejected(message: &str) -> CallReply<Value> {
    CallReply::Error(CallError::new(CallError::REJECTED, message))
}

fn account_call(key: &str, command: &str, amount: u64, reply: &str) -> Call {
    Call::new("account", key, command, json!({ "amount": amount })).with_reply(reply, ID)
}

fn effects(kit: &TestKit<Transfer>) -> Vec<Effect> {
    kit.last().map(|h| h.effects.clone()).unwrap_or_default()
}

/// A transfer of 30 from alice to bob, debited: waiting for the credit.
fn crediting(timeout_ms: Option<u64>) -> TestKit<Transfer> {
    let mut kit = kit();
    let mut start = json!({"from": "alice", "to": "bob", "amount": 30});
    if let Some(ms) = timeout_ms {
        start["timeoutMs"] = json!(ms);
    }
    kit.handle("start", start).expect("start");
    kit.answer(&account_call("alice", "withdraw", 30, "debited"), &ok())
        .expect("debited");
    kit
}

#[test]
fn declares_its_commands() {
    assert_eq!(
        kit().commands(),
        [
            "start", "get", "debited", "credited", "timeout", "refunded", "reversed"
        ]
    );
    let new = kit().handle("get", json!(null)).expect("get");
    assert_eq!(
        new,
        json!({"status": "new", "from": "", "to": "", "amount": 0, "timeoutMs": 0})
    );
}

#[test]
fn debits_then_credits() {
    let mut kit = kit();
    let start = json!({"from": "alice", "to": "bob", "amount": 30});
    let reply = kit.handle("start", start).expect("start");
    assert_eq!(
        reply,
        json!({"status": "debiting", "from": "alice", "to": "bob", "amount": 30,
            "timeoutMs": DEFAULT_TIMEOUT_MS})
    );
    let debit = account_call("alice", "withdraw", 30, "debited");
    assert_eq!(effects(&kit), [Effect::Call(debit.clone())]);

    let reply = kit.answer(&debit, &ok()).expect("debited");
    assert_eq!(reply["status"], "crediting");
    let credit = account_call("bob", "deposit", 30, "credited");
    let timeout = Timer {
        name: "timeout".into(),
        delay_ms: DEFAULT_TIMEOUT_MS,
        every_ms: None,
        command: "timeout".into(),
        payload: json!(null),
    };
    assert_eq!(
        effects(&kit),
        [Effect::Call(credit.clone()), Effect::Schedule(timeout)]
    );
    assert!(kit.timers().contains_key("timeout"));

    let reply = kit.answer(&credit, &ok()).expect("credited");
    assert_eq!(reply["status"], "completed");
    assert_eq!(effects(&kit), [Effect::Cancel("timeout".into())]);
    assert!(kit.timers().is_empty());
    assert_eq!(kit.sequence(), 3);
}

#[test]
fn a_rejected_debit_fails_the_transfer() {
    let mut kit = kit();
    kit.handle("start", json!({"from": "alice", "to": "bob", "amount": 30}))
        .expect("start");
    let debit = account_call("alice", "withdraw", 30, "debited");
    let reply = kit
        .answer(
            &debit,
            &rejected("insufficient funds: balance 10, requested 30"),
        )
        .expect("debited");
    assert_eq!(reply["status"], "failed");
    assert_eq!(
        reply["reason"],
        "debit failed: insufficient funds: balance 10, requested 30"
    );
    assert_eq!(effects(&kit), []);
    assert!(kit.timers().is_empty());
    // A repeated answer does nothing.
    kit.answer(&debit, &ok()).expect("debited again");
    assert_eq!((effects(&kit), kit.sequence()), (vec![], 2));
}

#[test]
fn a_rejected_credit_is_refunded() {
    let mut kit = crediting(None);
    let credit = account_call("bob", "deposit", 30, "credited");
    let unknown = CallReply::<Value>::Error(CallError::new(CallError::UNKNOWN_TYPE, "no account"));
    let reply = kit.answer(&credit, &unknown).expect("credited");
    assert_eq!(reply["status"], "refunding");
    assert_eq!(reply["reason"], "credit failed: no account");
    let refund = account_call("alice", "deposit", 30, "refunded");
    assert_eq!(
        effects(&kit),
        [
            Effect::Cancel("timeout".into()),
            Effect::Call(refund.clone())
        ]
    );
    assert!(kit.timers().is_empty());

    // The timer fired before its cancel took effect: no second refund.
    kit.fire_as("timeout", "timeout", json!(null))
        .expect("timeout");
    assert_eq!(effects(&kit), []);
    assert!(!kit.last().expect("handled").persisted);

    let reply = kit.answer(&refund, &ok()).expect("refunded");
    assert_eq!(reply["status"], "refunded");
    kit.answer(&refund, &ok()).expect("refunded again");
    assert_eq!(kit.sequence(), 4);
}

#[test]
fn a_credit_that_times_out_is_refunded_once() {
    let mut kit = crediting(Some(1_000));
    assert_eq!(kit.timers()["timeout"].delay_ms, 1_000);
    let reply = kit.fire("timeout").expect("timeout");
    assert_eq!(reply["status"], "refunding");
    assert_eq!(reply["reason"], "credit timed out after 1000 ms");
    let refund = account_call("alice", "deposit", 30, "refunded");
    assert_eq!(effects(&kit), [Effect::Call(refund.clone())]);

    // The credit finally fails: the refund is already under way.
    let credit = account_call("bob", "deposit", 30, "credited");
    kit.answer(&credit, &rejected("closed")).expect("credited");
    assert_eq!(effects(&kit), []);
    assert!(!kit.last().expect("handled").persisted);
    kit.answer(&refund, &ok()).expect("refunded");
    assert_eq!(kit.state().status.name(), "refunded");
    assert_eq!(
        kit.state().reason.as_deref(),
        Some("credit timed out after 1000 ms")
    );
}

#[test]
fn a_late_credit_after_the_refund_is_reversed() {
    let mut kit = crediting(None);
    kit.fire("timeout").expect("timeout");
    let refund = account_call("alice", "deposit", 30, "refunded");
    kit.answer(&refund, &ok()).expect("refunded");

    // The credit went through after all: bob has the money too, so it is taken back once.
    let credit = account_call("bob", "deposit", 30, "credited");
    let reply = kit.answer(&credit, &ok()).expect("credited");
    assert_eq!(
        (&reply["status"], &reply["lateCredit"]),
        (&json!("refunded"), &json!("reversing"))
    );
    let reverse = account_call("bob", "withdraw", 30, "reversed");
    assert_eq!(effects(&kit), [Effect::Call(reverse.clone())]);
    kit.answer(&credit, &ok()).expect("credited again");
    assert_eq!(effects(&kit), []);

    let reply = kit.answer(&reverse, &ok()).expect("reversed");
    assert_eq!(reply["lateCredit"], "reversed");
    kit.answer(&reverse, &rejected("again"))
        .expect("reversed again");
    assert_eq!(kit.state().late_credit, Some(super::LateCredit::Reversed));
}

#[test]
fn a_late_credit_that_cannot_be_reversed_is_recorded() {
    let mut kit = crediting(None);
    kit.fire("timeout").expect("timeout");
    let credit = account_call("bob", "deposit", 30, "credited");
    kit.answer(&credit, &ok()).expect("credited");
    let reverse = account_call("bob", "withdraw", 30, "reversed");
    let reply = kit
        .answer(&reverse, &rejected("insufficient funds"))
        .expect("reversed");
    assert_eq!(
        reply["lateCredit"],
        json!({"unreversed": "insufficient funds"})
    );
    assert_eq!(reply["status"], "refunding");
}

#[test]
fn a_failed_refund_needs_a_person() {
    let mut kit = crediting(None);
    let credit = account_call("bob", "deposit", 30, "credited");
    kit.answer(&credit, &rejected("closed")).expect("credited");
    let refund = account_call("alice", "deposit", 30, "refunded");
    let reply = kit
        .answer(&refund, &rejected("depositing 30 overflows the balance"))
        .expect("refunded");
    assert_eq!(reply["status"], "refund-failed");
    assert_eq!(
        reply["reason"],
        "credit failed: closed; refund failed: depositing 30 overflows the balance"
    );
}

#[test]
fn the_timer_after_completion_does_nothing() {
    let mut kit = crediting(None);
    let credit = account_call("bob", "deposit", 30, "credited");
    kit.answer(&credit, &ok()).expect("credited");
    kit.fire_as("timeout", "timeout", json!(null))
        .expect("timeout");
    assert_eq!(effects(&kit), []);
    assert_eq!(kit.state().status.name(), "completed");
}

#[test]
fn start_is_checked() {
    let mut kit = kit();
    let start =
        |from: &str, to: &str, amount: i64| json!({"from": from, "to": to, "amount": amount});
    assert_eq!(
        kit.handle("start", start("alice", "bob", 0)),
        Err(Failure::Rejected("the amount must be positive".into()))
    );
    assert_eq!(
        kit.handle("start", start("alice", "alice", 5)),
        Err(Failure::Rejected(
            "cannot transfer from account alice to itself".into()
        ))
    );
    for bad in [
        start("alice", "bob", -5),
        json!({"from": "alice", "to": "bob"}),
        json!({"from": "alice", "to": "bob", "amount": 5, "memo": "x"}),
        json!(null),
    ] {
        assert!(
            matches!(
                kit.handle("start", bad.clone()),
                Err(Failure::BadRequest(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(kit.sequence(), 0);
    kit.handle("start", start("alice", "bob", 5))
        .expect("start");
    assert_eq!(
        kit.handle("start", start("alice", "bob", 5)),
        Err(Failure::Rejected("transfer t-1 is already debiting".into()))
    );
}

#[test]
fn answers_and_timeouts_cannot_be_forged() {
    let mut kit = crediting(None);
    let forged = json!({"ok": {"balance": 0}});
    for command in ["debited", "credited", "refunded", "reversed"] {
        assert!(
            matches!(
                kit.handle(command, forged.clone()),
                Err(Failure::BadRequest(_))
            ),
            "{command}"
        );
        assert!(
            matches!(
                kit.reply(command, "t-2", &ok()),
                Err(Failure::BadRequest(_))
            ),
            "{command} for another transfer"
        );
    }
    assert_eq!(
        kit.handle("timeout", json!(null)),
        Err(Failure::BadRequest(
            "`timeout` is fired by the transfer's timer, not sent".into()
        ))
    );
    assert!(matches!(
        kit.fire_as("other", "timeout", json!(null)),
        Err(Failure::BadRequest(_))
    ));
    assert_eq!(kit.state().status.name(), "crediting");
}
