//! The model against tests/tck/SPEC.md, through the SDK's crdt test kit (a single replica).

use cella_sdk::crdt::{CrdtAction, CrdtOp};
use cella_sdk::testing::{CrdtTestKit, Failure};
use cella_sdk::{Consistency, CrdtType, Durability, Value, json};

use super::TckCrdt;

fn update(kit: &mut CrdtTestKit<TckCrdt>, ops: Value) -> Result<Value, Failure> {
    kit.handle("update", json!({ "ops": ops }))
}

fn get(kit: &mut CrdtTestKit<TckCrdt>, path: Value, crdt: &str) -> Value {
    kit.handle("get", json!({"path": path, "type": crdt}))
        .unwrap()["value"]
        .clone()
}

#[test]
fn describes_a_durable_or_map() {
    let kit = CrdtTestKit::<TckCrdt>::new();
    assert_eq!(kit.commands(), ["update", "get"]);
    assert_eq!(kit.crdt_type(), CrdtType::OrMap);
    assert_eq!(kit.durability(), Durability::Durable);
}

#[test]
fn every_type_through_its_handle_nested_two_deep() {
    let mut kit = CrdtTestKit::<TckCrdt>::new();
    let ops = json!([
        {"path": ["a", "b", "gc"], "type": "g-counter", "action": {"increment": 3}},
        {"path": ["a", "b", "pn"], "type": "pn-counter", "action": {"decrement": 2}},
        {"path": ["a", "b", "gs"], "type": "g-set", "action": {"add": {"k": [1]}}},
        {"path": ["a", "b", "os"], "type": "or-set", "action": {"add": "x"}},
        {"path": ["a", "b", "os"], "type": "or-set", "action": {"add": 2}},
        {"path": ["a", "b", "os"], "type": "or-set", "action": {"remove": "x"}},
        {"path": ["a", "b", "r"], "type": "lww-register", "action": {"set": null}},
        {"path": ["a", "b", "r"], "type": "lww-register", "action": {"set": [1, 2]}},
        {"path": ["a", "b", "f"], "type": "flag", "action": "enable"},
        {"path": ["a", "b", "v"], "type": "vote", "action": {"vote": true}},
        {"path": ["a", "b", "m"], "type": "or-map", "action": {"delete": "nothing"}},
    ]);
    assert_eq!(update(&mut kit, ops.clone()), Ok(json!({"applied": 11})));
    let handled = kit.last().unwrap();
    assert_eq!(
        handled.ops[0],
        CrdtOp::new(
            ["a", "b", "gc"],
            CrdtAction::Increment(3),
            Some(CrdtType::GCounter)
        )
    );
    assert_eq!(handled.ops[2].creates, Some(CrdtType::GSet));
    assert_eq!(handled.consistency, Consistency::Local);
    let b = json!({
        "gc": 3, "pn": -2, "gs": [{"k": [1]}], "os": [2], "r": [1, 2], "f": true,
        "v": {"votes_for": 1, "voters": 1, "majority": true}, "m": {},
    });
    assert_eq!(kit.value(), json!({"a": {"b": b}}));
    assert_eq!(
        kit.handle("get", json!(null)),
        Ok(json!({"value": {"a": {"b": b}}}))
    );
    assert_eq!(
        get(&mut kit, json!(["a", "b", "gc"]), "g-counter"),
        json!(3)
    );
    assert_eq!(
        get(&mut kit, json!(["a", "b", "pn"]), "pn-counter"),
        json!(-2)
    );
    assert_eq!(
        get(&mut kit, json!(["a", "b", "gs"]), "g-set"),
        json!([{"k": [1]}])
    );
    assert_eq!(get(&mut kit, json!(["a", "b", "os"]), "or-set"), json!([2]));
    assert_eq!(
        get(&mut kit, json!(["a", "b", "r"]), "lww-register"),
        json!([1, 2])
    );
    assert_eq!(get(&mut kit, json!(["a", "b", "f"]), "flag"), json!(true));
    assert_eq!(get(&mut kit, json!(["a", "b"]), "or-map"), b);
    assert_eq!(get(&mut kit, json!([]), "or-map"), json!({"a": {"b": b}}));
    assert_eq!(
        get(&mut kit, json!(["a", "b", "v"]), "vote"),
        json!({"votes_for": 1, "voters": 1, "majority": true})
    );
    // A path that does not exist reads as null.
    assert_eq!(
        get(&mut kit, json!(["a", "x", "gc"]), "g-counter"),
        Value::Null
    );
    assert_eq!(get(&mut kit, json!(["nope"]), "flag"), Value::Null);
    // Chained: the next command sees the value as the last one left it.
    assert_eq!(update(&mut kit, ops), Ok(json!({"applied": 11})));
    assert_eq!(kit.value()["a"]["b"]["gc"], json!(6));
    assert_eq!(kit.value()["a"]["b"]["os"], json!([2]));
}

#[test]
fn clear_and_delete() {
    let mut kit = CrdtTestKit::<TckCrdt>::new();
    update(
        &mut kit,
        json!([
            {"path": ["s"], "type": "or-set", "action": {"add": 1}},
            {"path": ["f"], "type": "flag", "action": "enable"},
            {"path": ["m", "c"], "type": "pn-counter", "action": {"increment": 1}},
            {"path": ["m", "d"], "type": "pn-counter", "action": {"increment": 1}},
        ]),
    )
    .unwrap();
    update(
        &mut kit,
        json!([
            {"path": ["s"], "type": "or-set", "action": "clear"},
            {"path": ["f"], "type": "flag", "action": "clear"},
            {"path": ["m"], "type": "or-map", "action": {"delete": "c"}},
        ]),
    )
    .unwrap();
    assert_eq!(kit.value(), json!({"s": [], "f": false, "m": {"d": 1}}));
    update(
        &mut kit,
        json!([{"path": ["m"], "type": "or-map", "action": "clear"}]),
    )
    .unwrap();
    assert_eq!(kit.value(), json!({"s": [], "f": false, "m": {}}));
    update(
        &mut kit,
        json!([{"path": [], "type": "or-map", "action": "clear"}]),
    )
    .unwrap();
    assert_eq!(kit.value(), json!({}));
}

#[test]
fn consistency_is_set_on_the_outcome() {
    let mut kit = CrdtTestKit::<TckCrdt>::new();
    for (asked, set) in [
        (json!("local"), Consistency::Local),
        (json!("majority"), Consistency::Majority),
        (json!("all"), Consistency::All),
        (json!(null), Consistency::Local),
    ] {
        kit.handle("update", json!({"ops": [], "consistency": asked}))
            .unwrap();
        assert_eq!(kit.last().unwrap().consistency, set);
    }
}

#[test]
fn a_handle_of_the_wrong_type_fails_on_the_host() {
    let mut kit = CrdtTestKit::<TckCrdt>::new();
    update(
        &mut kit,
        json!([{"path": ["c"], "type": "g-counter", "action": {"increment": 1}}]),
    )
    .unwrap();
    let wrong = json!([
        {"path": ["n"], "type": "flag", "action": "enable"},
        {"path": ["c"], "type": "or-set", "action": {"add": 1}},
    ]);
    assert!(matches!(update(&mut kit, wrong), Err(Failure::Failed(_))));
    assert_eq!(kit.value(), json!({"c": 1}));
    let decrement = json!([{"path": ["c"], "type": "pn-counter", "action": {"decrement": 1}}]);
    assert!(matches!(
        update(&mut kit, decrement),
        Err(Failure::Failed(_))
    ));
    assert_eq!(kit.value(), json!({"c": 1}));
}

#[test]
fn bad_payloads_are_bad_requests() {
    let mut kit = CrdtTestKit::<TckCrdt>::new();
    let op = |path: Value, crdt: &str, action: Value| json!({"ops": [{"path": path, "type": crdt, "action": action}]});
    for payload in [
        json!(null),
        json!([]),
        json!({"ops": 1}),
        json!({"ops": [], "consistency": "most"}),
        json!({"ops": [{"path": ["a"], "type": "g-counter"}]}),
        op(json!(["a"]), "counter", json!({"increment": 1})),
        op(json!(["a"]), "g-counter", json!({"increment": -1})),
        op(json!(["a"]), "g-counter", json!({"decrement": 1})),
        op(json!(["a"]), "g-set", json!({"remove": 1})),
        op(json!(["a"]), "flag", json!({"enable": true})),
        op(json!(["a"]), "vote", json!({"vote": "yes"})),
        op(json!(["a"]), "or-map", json!({"delete": 1})),
        op(json!(["a"]), "lww-register", json!("clear")),
        op(json!([]), "g-counter", json!({"increment": 1})),
        op(json!([1]), "g-counter", json!({"increment": 1})),
    ] {
        assert!(
            matches!(
                kit.handle("update", payload.clone()),
                Err(Failure::BadRequest(_))
            ),
            "{payload}"
        );
    }
    for payload in [
        json!(1),
        json!({"path": []}),
        json!({"path": [], "type": "flag"}),
    ] {
        assert!(
            matches!(
                kit.handle("get", payload.clone()),
                Err(Failure::BadRequest(_))
            ),
            "{payload}"
        );
    }
    assert_eq!(kit.value(), json!({}));
}
