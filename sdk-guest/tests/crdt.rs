//! The export glue of crdt entities and ephemeral value entities, driven through
//! `CrdtTestKit`, `TestKit` and the raw `entity` interface: the descriptor, the operations each
//! typed handle records (paths and created types in nested maps), reads that see the command's
//! own operations, consistency, failures, and the single-replica model the kit chains commands
//! with.

use cella_sdk::bindings::cella::entity::types::{self as wit, EntityKind};
use cella_sdk::bindings::exports::cella::entity::entity::Guest;
use cella_sdk::crdt::{CrdtAction, CrdtOp};
use cella_sdk::testing::{CrdtReplica, CrdtTestKit, Failure, TestKit};
use cella_sdk::{
    Consistency, Context, CrdtContext, CrdtEntity, CrdtType, Deserialize, Durability,
    ExportedEntity, ORMap, PNCounter, Reply, Result, Serialize, Value, ValueEntity, json,
};

/// A counter with a consistency per command.
struct Likes;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum LikesCommand {
    Like(Option<Consistency>),
    Unlike,
    Count,
}

impl CrdtEntity for Likes {
    type Data = PNCounter;
    type Command = LikesCommand;

    fn handle(likes: &mut PNCounter, cmd: LikesCommand, ctx: &mut CrdtContext) -> Result<Reply> {
        match cmd {
            LikesCommand::Like(consistency) => {
                ctx.set_consistency(consistency.unwrap_or_default());
                likes.increment(1);
                likes.increment(2);
            }
            LikesCommand::Unlike => likes.decrement(1),
            LikesCommand::Count => {}
        }
        Ok(json!(likes.value()))
    }
}

cella_sdk::export_entity!(crdt Likes);

/// A map reached through every handle type.
struct Board;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BoardCommand {
    Fill,
    Drop(String),
    Wipe,
    Mistype,
    Misread,
    Read,
}

impl CrdtEntity for Board {
    type Data = ORMap;
    type Command = BoardCommand;

    fn handle(board: &mut ORMap, cmd: BoardCommand, _ctx: &mut CrdtContext) -> Result<Reply> {
        match cmd {
            BoardCommand::Fill => {
                board.g_counter("views").increment(2);
                board.pn_counter("score").decrement(3);
                let mut tags = board.or_map("meta").g_set::<String>("tags");
                tags.add("b");
                tags.add("a");
                board
                    .or_map("meta")
                    .or_set::<Value>("seen")
                    .add(&json!({"y": 1, "x": 2}));
                board.lww_register::<String>("title").set("hello");
                board.flag("open").enable();
                board.or_map("a").or_map("b").vote("v").vote(true);
                let read = json!({
                    "views": board.g_counter("views").value(),
                    "tags": tags.elements(),
                    "hasA": tags.contains("a"),
                    "title": board.lww_register::<String>("title").value(),
                    "open": board.flag("open").is_enabled(),
                    "keys": board.keys(),
                });
                return Ok(read);
            }
            BoardCommand::Drop(key) => board.delete(&key),
            BoardCommand::Wipe => board.clear(),
            BoardCommand::Mistype => board.or_set::<String>("views").add("x"),
            BoardCommand::Misread => {
                board.or_set::<String>("views").elements();
            }
            BoardCommand::Read => {}
        }
        Ok(board.value())
    }
}

cella_sdk::export_entity!(ephemeral crdt Board);

/// An ephemeral value counter that may ask for an effect.
#[derive(Default, Serialize, Deserialize)]
struct Visits {
    total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum VisitsCommand {
    Add(i64),
    Notify,
}

impl ValueEntity for Visits {
    type Command = VisitsCommand;

    fn handle(&mut self, cmd: VisitsCommand, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            VisitsCommand::Add(n) => self.total += n,
            VisitsCommand::Notify => ctx.publish("visits", &self.total),
        }
        Ok(json!(self.total))
    }
}

cella_sdk::export_entity!(ephemeral value Visits);

fn at(path: &[&str], action: CrdtAction, creates: CrdtType) -> CrdtOp {
    CrdtOp::new(path.iter().copied(), action, Some(creates))
}

#[test]
fn describes_kind_type_and_durability() {
    let likes = <Likes as ExportedEntity>::Glue::describe();
    assert_eq!(likes.kind, EntityKind::Crdt);
    assert_eq!(likes.crdt, Some(wit::CrdtType::PnCounter));
    assert_eq!(likes.durability, wit::Durability::Durable);
    assert_eq!(likes.commands, ["like", "unlike", "count"]);
    assert!(likes.subscriptions.is_empty() && likes.events_topic.is_none());

    let board = CrdtTestKit::<Board>::new();
    assert_eq!(
        (board.crdt_type(), board.durability()),
        (CrdtType::OrMap, Durability::Ephemeral)
    );
    assert_eq!(board.value(), json!({}));

    let visits = TestKit::<Visits>::new();
    assert_eq!(visits.durability(), Durability::Ephemeral);
    let visits = <Visits as ExportedEntity>::Glue::describe();
    assert_eq!((visits.kind, visits.crdt), (EntityKind::Value, None));
}

#[test]
fn counter_reads_its_own_operations_and_sets_consistency() {
    let mut kit = CrdtTestKit::<Likes>::new();
    kit.set_value(json!(10));
    assert_eq!(kit.handle("like", json!(null)), Ok(json!(13)));
    let last = kit.last().unwrap();
    assert_eq!(
        last.ops,
        [
            CrdtOp::root(CrdtAction::Increment(1)),
            CrdtOp::root(CrdtAction::Increment(2))
        ]
    );
    assert_eq!(last.consistency, Consistency::Local);
    assert_eq!(kit.handle("like", json!("majority")), Ok(json!(16)));
    assert_eq!(kit.last().unwrap().consistency, Consistency::Majority);
    assert_eq!(kit.handle("unlike", json!(null)), Ok(json!(15)));
    assert_eq!(kit.handle("count", json!(null)), Ok(json!(15)));
    assert!(kit.last().unwrap().ops.is_empty());
    assert_eq!(kit.value(), json!(15));
}

#[test]
fn the_raw_interface_carries_operations_and_consistency() {
    let ctx = wit::Context {
        entity_type: "likes".into(),
        key: "post-1".into(),
        command_id: "c1".into(),
        command: "like".into(),
        timestamp_ms: 5,
        random_seed: 0,
        sequence: 0,
        correlation: None,
        timer: None,
        message: None,
    };
    type Glue = <Likes as ExportedEntity>::Glue;
    let Ok(outcome) = Glue::handle(ctx.clone(), Some(b"-4".to_vec()), "\"all\"".into()) else {
        panic!("like failed");
    };
    assert_eq!(outcome.reply, "-1");
    assert_eq!(outcome.consistency, wit::Consistency::All);
    assert!(matches!(
        outcome.crdt_ops.as_slice(),
        [a, b] if a.path.is_empty() && a.creates.is_none()
            && matches!(a.action, wit::CrdtAction::Increment(1))
            && matches!(b.action, wit::CrdtAction::Increment(2))
    ));
    assert!(outcome.state.is_none() && outcome.events.is_empty() && outcome.effects.is_empty());
    // No value (never the host's way) reads as new data; a value of another type fails.
    let Ok(outcome) = Glue::handle(ctx.clone(), None, "null".into()) else {
        panic!("like failed");
    };
    assert_eq!(outcome.reply, "3");
    assert!(matches!(
        Glue::handle(ctx.clone(), Some(b"[1]".to_vec()), "null".into()),
        Err(wit::Failure::Rejected(m)) if m.starts_with("entity error:")
    ));
    assert!(matches!(
        Glue::handle(ctx, Some(b"1".to_vec()), "\"most\"".into()),
        Err(wit::Failure::BadRequest(m)) if m.starts_with("command `like`")
    ));
    assert_eq!(Glue::render_state(b"7".to_vec()), Ok("7".into()));
}

#[test]
fn map_handles_record_paths_and_created_types() {
    let mut kit = CrdtTestKit::<Board>::new();
    let reply = kit.handle("fill", json!(null)).unwrap();
    assert_eq!(
        reply,
        json!({
            "views": 2, "tags": ["a", "b"], "hasA": true, "title": "hello", "open": true,
            "keys": ["a", "meta", "open", "score", "title", "views"],
        })
    );
    let ops = &kit.last().unwrap().ops;
    assert_eq!(
        ops[0],
        at(&["views"], CrdtAction::Increment(2), CrdtType::GCounter)
    );
    assert_eq!(
        ops[1],
        at(&["score"], CrdtAction::Decrement(3), CrdtType::PnCounter)
    );
    assert_eq!(
        ops[2],
        at(
            &["meta", "tags"],
            CrdtAction::Add(json!("b")),
            CrdtType::GSet
        )
    );
    assert_eq!(
        ops[4],
        at(
            &["meta", "seen"],
            CrdtAction::Add(json!({"x": 2, "y": 1})),
            CrdtType::OrSet
        )
    );
    assert_eq!(
        ops[5],
        at(
            &["title"],
            CrdtAction::Set(json!("hello")),
            CrdtType::LwwRegister
        )
    );
    assert_eq!(ops[6], at(&["open"], CrdtAction::Enable, CrdtType::Flag));
    assert_eq!(
        ops[7],
        at(&["a", "b", "v"], CrdtAction::Vote(true), CrdtType::Vote)
    );
    assert_eq!(ops.len(), 8);
    assert_eq!(
        kit.value(),
        json!({
            "views": 2,
            "score": -3,
            "meta": {"tags": ["a", "b"], "seen": [{"x": 2, "y": 1}]},
            "title": "hello",
            "open": true,
            "a": {"b": {"v": {"votes_for": 1, "voters": 1, "majority": true}}},
        })
    );
}

#[test]
fn delete_and_clear_keep_the_data_for_a_key_written_again() {
    let mut kit = CrdtTestKit::<Board>::new();
    kit.handle("fill", json!(null)).unwrap();
    assert_eq!(
        kit.handle("drop", json!("views")).unwrap().get("views"),
        None
    );
    assert_eq!(
        kit.last().unwrap().ops,
        [CrdtOp::root(CrdtAction::Delete("views".into()))]
    );
    // Written again, the counter goes on from its old count, as on the host.
    kit.handle("fill", json!(null)).unwrap();
    assert_eq!(kit.value()["views"], json!(4));
    assert_eq!(kit.handle("wipe", json!(null)), Ok(json!({})));
    assert_eq!(kit.value(), json!({}));
}

#[test]
fn a_handle_of_another_type_fails_on_the_host_not_in_the_guest() {
    let mut kit = CrdtTestKit::<Board>::new();
    kit.handle("fill", json!(null)).unwrap();
    let before = kit.value();
    // The guest records the operation; the host (and the kit) fails the command.
    let handled = kit.preview("mistype", json!(null)).unwrap();
    assert_eq!(
        handled.ops,
        [at(&["views"], CrdtAction::Add(json!("x")), CrdtType::OrSet)]
    );
    assert!(matches!(
        kit.handle("mistype", json!(null)),
        Err(Failure::Failed(m)) if m.contains("views") && m.contains("g-counter")
    ));
    assert_eq!(kit.value(), before);
    // Reading data as another type fails the command in the guest.
    assert!(matches!(
        kit.handle("misread", json!(null)),
        Err(Failure::Rejected(m)) if m.starts_with("entity error: the data at views")
    ));
}

#[test]
fn ephemeral_value_entities_keep_state_and_ask_for_no_effects() {
    let mut kit = TestKit::<Visits>::new();
    assert_eq!(kit.handle("add", json!(2)), Ok(json!(2)));
    assert_eq!(kit.handle("add", json!(3)), Ok(json!(5)));
    assert!(matches!(
        kit.handle("notify", json!(null)),
        Err(Failure::Rejected(m)) if m.starts_with("entity error: an ephemeral entity")
    ));
    assert_eq!(kit.state().total, 5);
}

#[test]
fn the_replica_orders_sets_by_canonical_text() {
    let mut set = CrdtReplica::new(CrdtType::OrSet);
    let add = |v: Value| CrdtOp::root(CrdtAction::Add(v));
    set.apply(&[
        add(json!(10)),
        add(json!(9)),
        add(json!("a")),
        add(json!({"b": 1, "a": 2})),
        add(json!({"a": 2, "b": 1})),
    ])
    .unwrap();
    assert_eq!(set.value(), json!(["a", 10, 9, {"a": 2, "b": 1}]));
    set.apply(&[CrdtOp::root(CrdtAction::Remove(json!(10)))])
        .unwrap();
    assert_eq!(set.value(), json!(["a", 9, {"a": 2, "b": 1}]));
    // All or nothing: the remove on a g-set fails the batch.
    let mut grow = CrdtReplica::from_value(CrdtType::GSet, &json!([1])).unwrap();
    let failed = grow.apply(&[add(json!(2)), CrdtOp::root(CrdtAction::Remove(json!(1)))]);
    assert!(matches!(failed, Err(m) if m.contains("remove does not apply to data of type g-set")));
    assert_eq!(grow.value(), json!([1]));
}

#[test]
fn the_replica_models_registers_flags_votes_and_inferred_types() {
    let mut map = CrdtReplica::from_value(
        CrdtType::OrMap,
        &json!({"n": 5, "v": {"votes_for": 1, "voters": 2, "majority": false}}),
    )
    .unwrap();
    map.apply(&[
        // A number read from a value takes a register's `set`.
        at(
            &["n"],
            CrdtAction::Set(json!("five")),
            CrdtType::LwwRegister,
        ),
        at(&["v"], CrdtAction::Vote(true), CrdtType::Vote),
        at(&["f"], CrdtAction::Enable, CrdtType::Flag),
        at(&["f"], CrdtAction::Clear, CrdtType::Flag),
        CrdtOp::new(["m", "k"], CrdtAction::Clear, None),
    ])
    .unwrap();
    assert_eq!(
        map.value(),
        json!({
            "n": "five",
            "v": {"votes_for": 2, "voters": 3, "majority": true},
            "f": false,
            "m": {},
        })
    );
    // This replica's later vote replaces its earlier one.
    map.apply(&[at(&["v"], CrdtAction::Vote(false), CrdtType::Vote)])
        .unwrap();
    assert_eq!(
        map.value()["v"],
        json!({"votes_for": 1, "voters": 3, "majority": false})
    );
    assert!(CrdtReplica::from_value(CrdtType::Flag, &json!(1)).is_err());
    // The host refuses paths deeper than 32 keys.
    let deep = |n: usize| CrdtOp::new(vec!["k"; n], CrdtAction::Enable, Some(CrdtType::Flag));
    map.apply(&[deep(32)]).unwrap();
    assert!(matches!(map.apply(&[deep(33)]), Err(m) if m.contains("33 keys deep")));
}
