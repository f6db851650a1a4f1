//! The crdt model (SPEC: the crdt model): `tck-crdt`'s module, every crdt type through its
//! typed handle in maps nested two deep, the types a handle creates, `clear` and `delete`,
//! `get` with and without a path, each consistency on a single node, a handle of the wrong
//! type failing on the host without changing anything, and bad payloads.

use serde_json::{Value, json};

use super::CRDT;
use crate::api::Api;

/// One operation of `update`: `action` on the data of type `ty` at `path`.
fn op(path: &[&str], ty: &str, action: Value) -> Value {
    json!({"path": path, "type": ty, "action": action})
}

/// One `tck-crdt` entity, with assertions that name the language and the key.
struct Entity<'a> {
    api: &'a Api<'a>,
    key: &'a str,
}

impl Entity<'_> {
    fn what(&self, what: &str) -> String {
        format!("[{}] {CRDT}/{} {what}", self.api.lang, self.key)
    }

    /// `update` with `ops` (and `consistency` unless null), which must apply them all.
    async fn update_with(&self, ops: Value, consistency: Value) {
        let count = ops.as_array().map_or(0, Vec::len);
        let payload = match consistency {
            Value::Null => json!({ "ops": ops }),
            c => json!({"ops": ops, "consistency": c}),
        };
        self.api
            .expect(
                CRDT,
                self.key,
                "update",
                payload,
                json!({ "applied": count }),
            )
            .await;
    }

    async fn update(&self, ops: Value) {
        self.update_with(ops, Value::Null).await;
    }

    /// `update` with one operation.
    async fn apply(&self, path: &[&str], ty: &str, action: Value) {
        self.update(json!([op(path, ty, action)])).await;
    }

    /// `get` through the handle of `ty` at `path`.
    async fn read(&self, path: &[&str], ty: &str) -> Value {
        let payload = json!({"path": path, "type": ty});
        let reply = self.api.ok(CRDT, self.key, "get", payload).await;
        reply_value(&reply, &self.what(&format!("get {path:?} as {ty}")))
    }

    /// Asserts what `get` reads through the handle of `ty` at `path`.
    async fn assert_read(&self, path: &[&str], ty: &str, expected: Value) {
        let got = self.read(path, ty).await;
        let what = self.what(&format!("get {path:?} as {ty}"));
        assert_eq!(got, expected, "{what}");
    }

    /// Asserts the whole value: `get` with a null payload, `get` of the empty path as an
    /// or-map, and the inspected state (sequence 0: a crdt entity has no journal).
    async fn assert_value(&self, expected: &Value) {
        let reply = self.api.ok(CRDT, self.key, "get", json!(null)).await;
        let what = self.what("get null");
        assert_eq!(&reply_value(&reply, &what), expected, "{what}");
        self.assert_read(&[], "or-map", expected.clone()).await;
        self.api
            .assert_state(CRDT, self.key, expected.clone(), 0)
            .await;
    }

    /// `update` with `ops`, which must fail with `(status, code)` and change nothing.
    async fn fails_unchanged(&self, payload: Value, failure: (u16, &str)) {
        let before = self.api.state(CRDT, self.key).await.0;
        self.api
            .fails(CRDT, self.key, "update", payload.clone(), failure)
            .await;
        let after = self.api.state(CRDT, self.key).await.0;
        let what = self.what(&format!("update {payload}"));
        assert_eq!(after, before, "{what}: the value after the failed update");
    }
}

/// The `value` of a `get` reply.
fn reply_value(reply: &Value, what: &str) -> Value {
    match reply.as_object() {
        Some(o) if o.len() == 1 && o.contains_key("value") => reply["value"].clone(),
        _ => panic!("{what}: expected {{\"value\": V}}, got {reply}"),
    }
}

/// The crdt area.
pub(super) async fn crdt(api: &Api<'_>) {
    module(api).await;
    handles(api).await;
    creates(api).await;
    clear_and_delete(api).await;
    reads(api).await;
    numbers_and_keys(api).await;
    consistency(api).await;
    wrong_type(api).await;
    bad_requests(api).await;
}

/// `GET /v1/modules/tck-crdt`: a durable or-map, eventually consistent, `update` then `get`.
async fn module(api: &Api<'_>) {
    let module = api.get(&format!("/v1/modules/{CRDT}")).await;
    let fields = [
        "kind",
        "commands",
        "crdt",
        "consistency",
        "durability",
        "subscriptions",
        "eventsTopic",
    ];
    let got: Vec<&Value> = fields.iter().map(|f| &module[*f]).collect();
    let expected = [
        json!("crdt"),
        json!(["update", "get"]),
        json!("or-map"),
        json!("eventual"),
        json!("durable"),
        json!([]),
        json!(null),
    ];
    assert_eq!(
        got,
        expected.iter().collect::<Vec<_>>(),
        "[{}] {CRDT}: the module's {fields:?}",
        api.lang
    );
}

/// Every crdt type through its handle, at `a/b/<key>`: the value read through the handle and
/// the whole value after each operation.
async fn handles(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-types",
    };
    e.assert_value(&json!({})).await;
    let mut b = serde_json::Map::new();
    // (key, type, action, the value read through the handle afterwards)
    let steps = [
        ("gc", "g-counter", json!({"increment": 3}), json!(3)),
        ("gc", "g-counter", json!({"increment": 0}), json!(3)),
        ("gc", "g-counter", json!({"increment": 4}), json!(7)),
        ("pn", "pn-counter", json!({"increment": 5}), json!(5)),
        ("pn", "pn-counter", json!({"decrement": 7}), json!(-2)),
        ("pn", "pn-counter", json!({"decrement": 0}), json!(-2)),
        (
            "gs",
            "g-set",
            json!({"add": {"k": [1]}}),
            json!([{"k": [1]}]),
        ),
        ("gs", "g-set", json!({"add": "x"}), json!(["x", {"k": [1]}])),
        ("gs", "g-set", json!({"add": "x"}), json!(["x", {"k": [1]}])),
        ("os", "or-set", json!({"add": "b"}), json!(["b"])),
        ("os", "or-set", json!({"add": 2}), json!(["b", 2])),
        ("os", "or-set", json!({"add": "a"}), json!(["a", "b", 2])),
        ("os", "or-set", json!({"add": "a"}), json!(["a", "b", 2])),
        ("os", "or-set", json!({"remove": "b"}), json!(["a", 2])),
        ("os", "or-set", json!({"remove": "zz"}), json!(["a", 2])),
        ("r", "lww-register", json!({"set": null}), json!(null)),
        ("r", "lww-register", json!({"set": [1, 2]}), json!([1, 2])),
        (
            "r",
            "lww-register",
            json!({"set": {"z": "ü ✓"}}),
            json!({"z": "ü ✓"}),
        ),
        ("f", "flag", json!("disable"), json!(false)),
        ("f", "flag", json!("enable"), json!(true)),
        ("f", "flag", json!("enable"), json!(true)),
        ("f", "flag", json!("disable"), json!(false)),
        ("f", "flag", json!("enable"), json!(true)),
        ("m", "or-map", json!({"delete": "nothing"}), json!({})),
        (
            "v",
            "vote",
            json!({"vote": true}),
            json!({"votes_for": 1, "voters": 1, "majority": true}),
        ),
        (
            "v",
            "vote",
            json!({"vote": false}),
            json!({"votes_for": 0, "voters": 1, "majority": false}),
        ),
    ];
    for (key, ty, action, expected) in steps {
        let path = ["a", "b", key];
        e.apply(&path, ty, action).await;
        e.assert_read(&path, ty, expected.clone()).await;
        b.insert(key.to_owned(), expected);
        e.assert_read(&["a", "b"], "or-map", Value::Object(b.clone()))
            .await;
    }
    // A map nested in `m`, and data at the top level, next to `a`.
    e.apply(&["a", "b", "m", "c"], "pn-counter", json!({"increment": 9}))
        .await;
    b.insert("m".to_owned(), json!({"c": 9}));
    e.apply(&["top"], "g-counter", json!({"increment": 1}))
        .await;
    e.assert_value(&json!({"a": {"b": b}, "top": 1})).await;
    e.assert_read(&["a"], "or-map", json!({ "b": b })).await;
    e.assert_read(&["a", "b", "m", "c"], "pn-counter", json!(9))
        .await;

    // The operations of one command apply in order, and the next command sees them.
    let more = json!([
        op(&["a", "b", "gc"], "g-counter", json!({"increment": 1})),
        op(&["a", "b", "gc"], "g-counter", json!({"increment": 2})),
        op(&["a", "b", "r"], "lww-register", json!({"set": "first"})),
        op(&["a", "b", "r"], "lww-register", json!({"set": "second"})),
        op(&["a", "b", "os"], "or-set", json!({"add": "c"})),
        op(&["a", "b", "os"], "or-set", json!({"remove": "a"})),
        op(&["a", "b", "f"], "flag", json!("disable")),
        op(&["a", "b", "v"], "vote", json!({"vote": true})),
    ]);
    e.update(more).await;
    b.insert("gc".to_owned(), json!(10));
    b.insert("r".to_owned(), json!("second"));
    b.insert("os".to_owned(), json!(["c", 2]));
    b.insert("f".to_owned(), json!(false));
    b.insert(
        "v".to_owned(),
        json!({"votes_for": 1, "voters": 1, "majority": true}),
    );
    e.assert_value(&json!({"a": {"b": b}, "top": 1})).await;
    // An empty list of operations changes nothing.
    e.update(json!([])).await;
    e.assert_value(&json!({"a": {"b": b}, "top": 1})).await;
}

/// A `g-counter` and a `g-set` handle create their own types inside a map (not the
/// `pn-counter` and `or-set` a bare increment or add would make): the host then refuses a
/// decrement and a remove on them.
async fn creates(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-creates",
    };
    e.update(json!([
        op(&["m", "gc"], "g-counter", json!({"increment": 2})),
        op(&["m", "gs"], "g-set", json!({"add": 1})),
        op(&["m", "pn"], "pn-counter", json!({"increment": 2})),
        op(&["m", "os"], "or-set", json!({"add": 1})),
    ]))
    .await;
    let value = json!({"m": {"gc": 2, "gs": [1], "pn": 2, "os": [1]}});
    e.assert_value(&value).await;
    // The pn-counter and the or-set take what the g-counter and the g-set do not.
    e.update(json!([
        op(&["m", "pn"], "pn-counter", json!({"decrement": 5})),
        op(&["m", "os"], "or-set", json!({"remove": 1})),
    ]))
    .await;
    let value = json!({"m": {"gc": 2, "gs": [1], "pn": -3, "os": []}});
    e.assert_value(&value).await;
    let decrement = op(&["m", "gc"], "pn-counter", json!({"decrement": 1}));
    let remove = op(&["m", "gs"], "or-set", json!({"remove": 1}));
    for wrong in [decrement, remove] {
        e.fails_unchanged(json!({ "ops": [wrong] }), (500, "entity_failed"))
            .await;
    }
    e.assert_value(&value).await;
    // The g-counter and the g-set still take their own operations.
    e.update(json!([
        op(&["m", "gc"], "g-counter", json!({"increment": 3})),
        op(&["m", "gs"], "g-set", json!({"add": 0})),
    ]))
    .await;
    e.assert_read(&["m", "gc"], "g-counter", json!(5)).await;
    e.assert_read(&["m", "gs"], "g-set", json!([0, 1])).await;
}

/// `clear` of an or-set, a flag and an or-map (nested and the entity's own), and `delete` of
/// a map's key.
async fn clear_and_delete(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-clear",
    };
    e.update(json!([
        op(&["s"], "or-set", json!({"add": 1})),
        op(&["s"], "or-set", json!({"add": 2})),
        op(&["f"], "flag", json!("enable")),
        op(&["m", "c"], "pn-counter", json!({"increment": 1})),
        op(&["m", "d"], "pn-counter", json!({"increment": 2})),
        op(&["m", "n", "x"], "g-counter", json!({"increment": 3})),
        op(&["m", "n", "y"], "lww-register", json!({"set": "y"})),
    ]))
    .await;
    let mut value = json!({
        "s": [1, 2], "f": true,
        "m": {"c": 1, "d": 2, "n": {"x": 3, "y": "y"}},
    });
    e.assert_value(&value).await;

    e.apply(&["s"], "or-set", json!("clear")).await;
    value["s"] = json!([]);
    e.assert_value(&value).await;
    e.apply(&["f"], "flag", json!("clear")).await;
    value["f"] = json!(false);
    e.assert_value(&value).await;
    e.apply(&["m"], "or-map", json!({"delete": "c"})).await;
    value["m"] = json!({"d": 2, "n": {"x": 3, "y": "y"}});
    e.assert_value(&value).await;
    e.assert_read(&["m", "c"], "pn-counter", Value::Null).await;
    // Deleting a key the map does not have changes nothing.
    e.apply(&["m"], "or-map", json!({"delete": "never"})).await;
    e.assert_value(&value).await;
    e.apply(&["m", "n"], "or-map", json!("clear")).await;
    value["m"] = json!({"d": 2, "n": {}});
    e.assert_value(&value).await;
    e.assert_read(&["m", "n", "x"], "g-counter", Value::Null)
        .await;
    e.apply(&["m"], "or-map", json!("clear")).await;
    value["m"] = json!({});
    e.assert_value(&value).await;
    e.apply(&[], "or-map", json!({"delete": "s"})).await;
    e.assert_value(&json!({"f": false, "m": {}})).await;
    e.apply(&[], "or-map", json!("clear")).await;
    e.assert_value(&json!({})).await;
    e.assert_read(&["f"], "flag", Value::Null).await;
}

/// `get` through each handle at paths that do not exist: `null`, never a change.
async fn reads(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-reads",
    };
    for ty in [
        "g-counter",
        "pn-counter",
        "g-set",
        "or-set",
        "lww-register",
        "flag",
        "or-map",
        "vote",
    ] {
        e.assert_read(&["nope"], ty, Value::Null).await;
        e.assert_read(&["x", "y", "z"], ty, Value::Null).await;
    }
    e.assert_value(&json!({})).await;
    e.apply(&["x", "y", "c"], "g-counter", json!({"increment": 1}))
        .await;
    e.assert_read(&["x", "y", "z"], "flag", Value::Null).await;
    e.assert_read(&["x", "nope", "c"], "g-counter", Value::Null)
        .await;
    e.assert_read(&["nope", "y"], "or-map", Value::Null).await;
    e.assert_read(&["x", "y"], "or-map", json!({"c": 1})).await;
    e.assert_value(&json!({"x": {"y": {"c": 1}}})).await;
}

/// 64-bit counters and integers beyond 2^53 keep every digit, and keys are any strings.
async fn numbers_and_keys(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-numbers",
    };
    let (max, big) = (u64::MAX, 9_007_199_254_740_993_u64);
    let keys = ["ü ✓", "a/b", "x.y"];
    e.update(json!([
        op(&keys, "g-counter", json!({ "increment": max })),
        op(&["pn"], "pn-counter", json!({ "increment": i64::MAX })),
        op(
            &["neg"],
            "pn-counter",
            json!({ "decrement": i64::MAX as u64 + 1 })
        ),
        op(&["r"], "lww-register", json!({ "set": big })),
        op(&["s"], "or-set", json!({ "add": big })),
        op(&["s"], "or-set", json!({ "add": big - 1 })),
    ]))
    .await;
    e.assert_read(&keys, "g-counter", json!(max)).await;
    e.assert_read(&["pn"], "pn-counter", json!(i64::MAX)).await;
    e.assert_read(&["neg"], "pn-counter", json!(i64::MIN)).await;
    e.assert_read(&["r"], "lww-register", json!(big)).await;
    e.assert_read(&["s"], "or-set", json!([big - 1, big])).await;
    e.assert_value(&json!({
        "ü ✓": {"a/b": {"x.y": max}},
        "pn": i64::MAX, "neg": i64::MIN, "r": big, "s": [big - 1, big],
    }))
    .await;
}

/// Each consistency, in the payload (set on the outcome by the SDK) and as `?consistency=`,
/// succeeds on a single node.
async fn consistency(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-consistency",
    };
    let inc = || json!([op(&["n"], "pn-counter", json!({"increment": 1}))]);
    let mut total = 0;
    for c in [json!("local"), json!("majority"), json!("all"), Value::Null] {
        e.update_with(inc(), c).await;
        total += 1;
        e.assert_read(&["n"], "pn-counter", json!(total)).await;
    }
    for (query, payload) in [
        ("local", json!("all")),
        ("majority", json!("local")),
        ("all", json!("majority")),
        ("all", Value::Null),
    ] {
        let path = format!("/v1/entities/{CRDT}/{}/update?consistency={query}", e.key);
        let mut body = json!({ "ops": inc() });
        if !payload.is_null() {
            body["consistency"] = payload;
        }
        let what = e.what(&format!("?consistency={query} update {body}"));
        let r = api.raw("POST", &path, &body.to_string(), &[], &what).await;
        assert_eq!(
            (r.status, &r.json),
            (200, &json!({"applied": 1})),
            "{what}: {}",
            r.body
        );
        total += 1;
        e.assert_read(&["n"], "pn-counter", json!(total)).await;
    }
    e.assert_value(&json!({ "n": total })).await;
}

/// A handle of the wrong type goes to the host, which fails the command (500 `entity_failed`)
/// and applies none of its operations, not even those before the wrong one.
async fn wrong_type(api: &Api<'_>) {
    let e = Entity {
        api,
        key: "cr-wrong",
    };
    e.update(json!([
        op(&["c"], "g-counter", json!({"increment": 1})),
        op(&["s"], "or-set", json!({"add": "x"})),
        op(&["r"], "lww-register", json!({"set": "v"})),
        op(&["m", "n"], "flag", json!("enable")),
    ]))
    .await;
    let value = json!({"c": 1, "s": ["x"], "r": "v", "m": {"n": true}});
    e.assert_value(&value).await;
    let wrong = [
        op(&["c"], "or-set", json!({"add": 1})),
        op(&["c"], "pn-counter", json!({"decrement": 1})),
        op(&["c"], "or-map", json!({"delete": "x"})),
        op(&["c", "x"], "g-counter", json!({"increment": 1})),
        op(&["s"], "flag", json!("enable")),
        op(&["s"], "lww-register", json!({"set": 1})),
        op(&["r"], "g-counter", json!({"increment": 1})),
        op(&["m"], "or-set", json!({"remove": "n"})),
        op(&["m", "n"], "vote", json!({"vote": true})),
    ];
    for wrong in wrong {
        let before = op(&["c"], "g-counter", json!({"increment": 10}));
        let new = op(&["new"], "flag", json!("enable"));
        let payload = json!({ "ops": [before, new, wrong] });
        e.fails_unchanged(payload, (500, "entity_failed")).await;
    }
    e.assert_value(&value).await;
    e.assert_read(&["c"], "g-counter", json!(1)).await;
    e.assert_read(&["new"], "flag", Value::Null).await;
    // The entity still takes operations that fit.
    e.apply(&["c"], "g-counter", json!({"increment": 1})).await;
    e.assert_read(&["c"], "g-counter", json!(2)).await;
}

/// Malformed payloads, operations, actions and consistencies are `bad_request`, and change
/// nothing.
async fn bad_requests(api: &Api<'_>) {
    let e = Entity { api, key: "cr-bad" };
    let one = |path: Value, ty: Value, action: Value| {
        let op = json!({"path": path, "type": ty, "action": action});
        json!({ "ops": [op] })
    };
    let at = |ty: &str, action: Value| one(json!(["a"]), json!(ty), action);
    let good = op(&["a"], "g-counter", json!({"increment": 1}));
    let updates = [
        json!(null),
        json!([]),
        json!("ops"),
        json!({}),
        json!({"ops": 1}),
        json!({"ops": {}}),
        json!({"ops": null}),
        json!({"ops": [1]}),
        json!({"ops": [[]]}),
        json!({"ops": [], "consistency": "most"}),
        json!({"ops": [], "consistency": 1}),
        json!({"ops": [], "consistency": "LOCAL"}),
        json!({"ops": [{"path": ["a"], "type": "g-counter"}]}),
        json!({"ops": [{"path": ["a"], "action": {"increment": 1}}]}),
        json!({"ops": [{"type": "g-counter", "action": {"increment": 1}}]}),
        one(json!("a"), json!("g-counter"), json!({"increment": 1})),
        one(json!([1]), json!("g-counter"), json!({"increment": 1})),
        one(json!(null), json!("g-counter"), json!({"increment": 1})),
        one(json!(["a"]), json!("counter"), json!({"increment": 1})),
        one(json!(["a"]), json!(1), json!({"increment": 1})),
        one(json!([]), json!("g-counter"), json!({"increment": 1})),
        one(json!([]), json!("flag"), json!("enable")),
        at("g-counter", json!({"increment": -1})),
        at("g-counter", json!({"increment": 1.5})),
        at("g-counter", json!({"increment": "1"})),
        at("pn-counter", json!({"decrement": -1})),
        at("g-counter", json!({"decrement": 1})),
        at("g-counter", json!("clear")),
        at("g-counter", json!({"increment": 1, "decrement": 1})),
        at("g-set", json!({"remove": 1})),
        at("g-set", json!("clear")),
        at("or-set", json!("enable")),
        at("or-set", json!({"add": 1, "remove": 1})),
        at("lww-register", json!("clear")),
        at("lww-register", json!({"add": 1})),
        at("flag", json!({"enable": true})),
        at("flag", json!({"set": true})),
        at("flag", json!("on")),
        at("vote", json!({"vote": "yes"})),
        at("vote", json!("vote")),
        at("or-map", json!({"delete": 1})),
        at("or-map", json!({"increment": 1})),
        at("or-map", json!(null)),
        at("or-set", json!({})),
        at("or-set", json!([])),
        // A valid operation before a bad one: the command fails whole.
        json!({"ops": [good.clone(), {"path": ["b"], "type": "nope", "action": "clear"}]}),
        json!({"ops": [good], "consistency": "most"}),
    ];
    for payload in updates {
        e.fails_unchanged(payload, (400, "bad_request")).await;
    }
    let gets = [
        json!(1),
        json!("a"),
        json!([]),
        json!({}),
        json!({"path": []}),
        json!({"type": "or-map"}),
        json!({"path": "a", "type": "flag"}),
        json!({"path": [1], "type": "flag"}),
        json!({"path": ["a"], "type": "counter"}),
        json!({"path": [], "type": "flag"}),
    ];
    for payload in gets {
        api.bad_request(CRDT, e.key, "get", payload).await;
    }
    // A body that is not JSON, and a consistency the node does not know.
    let r = api.node.call(CRDT, e.key, "update", "{nope").await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{}: {}",
        e.what("update with a body that is not JSON"),
        r.body
    );
    let path = format!("/v1/entities/{CRDT}/{}/update?consistency=most", e.key);
    let body = json!({"ops": [op(&["a"], "g-counter", json!({"increment": 1}))]});
    let what = e.what("update ?consistency=most");
    let r = api.raw("POST", &path, &body.to_string(), &[], &what).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{what}: {}",
        r.body
    );
    api.unknown_command(CRDT, e.key, "nope").await;
    e.assert_value(&json!({})).await;
}
