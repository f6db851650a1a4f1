//! Native unit testing of crdt entities: [`CrdtTestKit`] plays the host's part for one crdt
//! entity, running commands through the same export glue a component runs against a value you
//! give it; it records each command's operations and consistency ([`CrdtHandled`]) and applies
//! the operations to a [`CrdtReplica`], a single-replica model of the value, so that commands
//! chain as on a node that is alone in its cluster.

use core::marker::PhantomData;

use serde_json::Value;

use super::Failure;
use crate::ExportedEntity;
use crate::bindings::cella::entity::types::{self as wit, EntityKind};
use crate::bindings::exports::cella::entity::entity::Guest;
use crate::crdt::model::{Mode, Node};
use crate::crdt::{self, Consistency, CrdtOp, CrdtType, Durability};

/// A single-replica model of crdt data: the value a node that is alone in its cluster would
/// hold after the operations applied to it (see [`CrdtTestKit`]).
///
/// Counters add; sets keep their elements in the order of their canonical JSON text (objects'
/// keys sorted, no whitespace), as the host renders them; a register holds the last value set;
/// a flag is on after `enable`, off after `disable` or `clear`; a vote counts this replica's
/// latest vote with the votes of a value given to [`from_value`](CrdtReplica::from_value) (taken
/// as the other nodes' votes); a map creates a key's data with the operation's `creates` type
/// (or the type its action implies) and keeps a deleted key's data, which comes back when the
/// key is written again. An operation the data does not take fails, as on the host.
///
/// A value given to [`from_value`](CrdtReplica::from_value) does not say which type each map
/// key's data is: it is read by its JSON shape, the most permissive type of it (a number a
/// pn-counter, an array an or-set, a boolean a flag, an object of just `votes_for`, `voters` and
/// `majority` a vote, another object an or-map, anything else a register), and takes another
/// type's operation when its JSON reads as that type.
#[derive(Clone, Debug, PartialEq)]
pub struct CrdtReplica {
    root: Node,
}

impl CrdtReplica {
    /// Empty data of `kind`: the value a new entity of that type has.
    pub fn new(kind: CrdtType) -> Self {
        Self {
            root: Node::empty(kind),
        }
    }

    /// The data of `kind` whose value (JSON view) is `value`, or why it does not read as one.
    pub fn from_value(kind: CrdtType, value: &Value) -> Result<Self, String> {
        Ok(Self {
            root: Node::from_view(kind, value)?,
        })
    }

    /// The type of the data.
    pub fn kind(&self) -> CrdtType {
        self.root.kind()
    }

    /// The value, as the host renders it.
    pub fn value(&self) -> Value {
        self.root.view()
    }

    /// Applies `ops` in order, all or none: the first that does not fit its data fails them
    /// all, with a message naming it.
    pub fn apply(&mut self, ops: &[CrdtOp]) -> Result<(), String> {
        let mut root = self.root.clone();
        for op in ops {
            root.apply(op, Mode::Replica)?;
        }
        self.root = root;
        Ok(())
    }
}

/// What a crdt command produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CrdtHandled {
    /// The reply.
    pub reply: Value,
    /// The operations recorded, in order.
    pub ops: Vec<CrdtOp>,
    /// The consistency the command asked for.
    pub consistency: Consistency,
}

/// Runs a [`CrdtEntity`](crate::CrdtEntity) in-process, as a node alone in its cluster does:
/// hands it a value, records each command's operations and consistency ([`CrdtHandled`]) and
/// applies the operations to a [`CrdtReplica`], so that commands chain.
///
/// ```
/// use cella_sdk::crdt::{CrdtAction, CrdtOp};
/// use cella_sdk::testing::{CrdtTestKit, Failure};
/// use cella_sdk::{Consistency, CrdtContext, CrdtEntity, Deserialize, ORSet, Reply, Result};
/// use cella_sdk::{json, reject};
///
/// struct Tags;
///
/// #[derive(Deserialize)]
/// #[serde(rename_all = "kebab-case")]
/// enum Command {
///     Tag(String),
///     Untag(String),
/// }
///
/// impl CrdtEntity for Tags {
///     type Data = ORSet<String>;
///     type Command = Command;
///     fn handle(tags: &mut ORSet<String>, cmd: Command, ctx: &mut CrdtContext) -> Result<Reply> {
///         match cmd {
///             Command::Tag(tag) if tag.is_empty() => reject!("a tag is not empty"),
///             Command::Tag(tag) => tags.add(&tag),
///             Command::Untag(tag) => {
///                 ctx.set_consistency(Consistency::Majority);
///                 tags.remove(&tag);
///             }
///         }
///         Ok(json!(tags.elements()))
///     }
/// }
/// cella_sdk::export_entity!(crdt Tags);
///
/// let mut kit = CrdtTestKit::<Tags>::new();
/// kit.set_value(json!(["red"]));
/// assert_eq!(kit.handle("tag", json!("blue")), Ok(json!(["blue", "red"])));
/// assert_eq!(kit.last().unwrap().ops, [CrdtOp::root(CrdtAction::Add(json!("blue")))]);
/// assert_eq!(kit.handle("untag", json!("red")), Ok(json!(["blue"])));
/// assert_eq!(kit.last().unwrap().consistency, Consistency::Majority);
/// assert_eq!(kit.value(), json!(["blue"]));
/// assert!(matches!(kit.handle("tag", json!("")), Err(Failure::Rejected(_))));
/// ```
///
/// [`handle`](CrdtTestKit::handle) hands the entity the kit's value, runs the command and
/// applies its operations to the value; an operation the data does not take fails the command
/// as the host does ([`Failure::Failed`], nothing applied). [`preview`](CrdtTestKit::preview)
/// runs a command without applying anything.
///
/// # Panics
///
/// The kit panics when the entity is not a crdt entity, or breaks the contract in a way the
/// host would not accept (a reply or an operation's value that is not JSON, effects).
pub struct CrdtTestKit<E: ExportedEntity> {
    entity_type: String,
    key: String,
    timestamp_ms: u64,
    commands_run: u64,
    replica: CrdtReplica,
    last: Option<CrdtHandled>,
    entity: PhantomData<fn() -> E>,
}

impl<E: ExportedEntity> Default for CrdtTestKit<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: ExportedEntity> CrdtTestKit<E> {
    /// The default time of commands: 2025-01-01T00:00:00Z.
    pub const DEFAULT_TIME_MS: u64 = 1_735_689_600_000;

    /// A new entity `test/test-key`, with its type's empty value.
    pub fn new() -> Self {
        Self::with_address("test", "test-key")
    }

    /// A new entity with the given address, with its type's empty value.
    pub fn with_address(entity_type: impl Into<String>, key: impl Into<String>) -> Self {
        let descriptor = E::Glue::describe();
        let (EntityKind::Crdt, Some(kind)) = (descriptor.kind, descriptor.crdt) else {
            panic!("not a crdt entity (use `testing::TestKit`)");
        };
        Self {
            entity_type: entity_type.into(),
            key: key.into(),
            timestamp_ms: Self::DEFAULT_TIME_MS,
            commands_run: 0,
            replica: CrdtReplica::new(crdt::from_wit_type(kind)),
            last: None,
            entity: PhantomData,
        }
    }

    /// Sets the time the next commands see ([`CrdtContext::timestamp_ms`](crate::CrdtContext)).
    pub fn set_time(&mut self, timestamp_ms: u64) {
        self.timestamp_ms = timestamp_ms;
    }

    /// The command names the entity declares.
    pub fn commands(&self) -> Vec<String> {
        E::Glue::describe().commands
    }

    /// The entity's crdt type.
    pub fn crdt_type(&self) -> CrdtType {
        self.replica.kind()
    }

    /// Whether the entity is durable or ephemeral.
    pub fn durability(&self) -> Durability {
        crdt::from_wit_durability(E::Glue::describe().durability)
    }

    /// Replaces the value, e.g. to start from the merged value of several nodes.
    ///
    /// # Panics
    ///
    /// If `value` does not read as the entity's type (see [`CrdtReplica::from_value`]).
    pub fn set_value(&mut self, value: Value) {
        match CrdtReplica::from_value(self.crdt_type(), &value) {
            Ok(replica) => self.replica = replica,
            Err(e) => panic!("cannot set the value: {e}"),
        }
    }

    /// The value, as the host renders it and hands it to the next command.
    pub fn value(&self) -> Value {
        self.replica.value()
    }

    /// The single-replica model of the value.
    pub fn replica(&self) -> &CrdtReplica {
        &self.replica
    }

    /// Runs `command` with the JSON `payload` (`Value::Null` for none), applies its operations
    /// and returns its reply, or why it failed (in which case nothing changes).
    pub fn handle(&mut self, command: &str, payload: Value) -> Result<Value, Failure> {
        self.last = None;
        let handled = self.preview(command, payload)?;
        self.replica.apply(&handled.ops).map_err(Failure::Failed)?;
        let reply = handled.reply.clone();
        self.last = Some(handled);
        Ok(reply)
    }

    /// Runs `command` with `payload` against the value and returns what it produced, without
    /// applying its operations.
    pub fn preview(&mut self, command: &str, payload: Value) -> Result<CrdtHandled, Failure> {
        self.commands_run += 1;
        let n = self.commands_run;
        let ctx = wit::Context {
            entity_type: self.entity_type.clone(),
            key: self.key.clone(),
            command_id: format!("test-command-{n}"),
            command: command.to_owned(),
            timestamp_ms: self.timestamp_ms,
            random_seed: n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            sequence: 0,
            correlation: None,
            timer: None,
            message: None,
        };
        let value = self.value().to_string().into_bytes();
        let outcome = E::Glue::handle(ctx, Some(value), payload.to_string())?;
        assert!(
            outcome.events.is_empty() && outcome.state.is_none(),
            "a crdt entity returned events or a state"
        );
        assert!(
            outcome.effects.is_empty() && outcome.forward.is_none(),
            "a crdt entity asked for effects or a forward"
        );
        let reply = super::parse_json("reply", &outcome.reply);
        let ops = outcome
            .crdt_ops
            .into_iter()
            .map(|op| crdt::from_wit_op(op).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        Ok(CrdtHandled {
            reply,
            ops,
            consistency: crdt::from_wit_consistency(outcome.consistency),
        })
    }

    /// What the last [`handle`](CrdtTestKit::handle) produced; `None` if it failed or none ran
    /// yet.
    pub fn last(&self) -> Option<&CrdtHandled> {
        self.last.as_ref()
    }
}
