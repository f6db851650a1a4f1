//! CRDT entities: the [`CrdtEntity`] trait, the [`CrdtContext`] its handler gets, the types of
//! the contract ([`CrdtType`], [`Consistency`], [`Durability`]) and the operations handles
//! record ([`CrdtOp`], [`CrdtAction`]). The typed handles are in `crdt_handles.rs`, the
//! single-replica model they read through in `crdt_model.rs`.
//!
//! A crdt entity's data is owned by the host: a replicated data type of which every node keeps
//! a replica, served without consensus and merged between nodes. For each command the host
//! hands the handler the merged value as this node sees it; the handler reads it and records
//! operations through the typed handle of the entity's type (see [`CrdtEntity`]), and the host
//! applies them as this node's replica. A command may ask for its change to reach more nodes
//! before the reply ([`CrdtContext::set_consistency`]).
//!
//! ```
//! use cella_sdk::crdt::{CrdtContext, CrdtEntity, ORMap};
//! use cella_sdk::{Deserialize, Reply, Result, json};
//!
//! /// Page statistics: hits per page and the set of visitors.
//! pub struct Pages;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! pub enum Command {
//!     Visit { page: String, visitor: String },
//!     Stats,
//! }
//!
//! impl CrdtEntity for Pages {
//!     type Data = ORMap;
//!     type Command = Command;
//!
//!     fn handle(stats: &mut ORMap, cmd: Command, _ctx: &mut CrdtContext) -> Result<Reply> {
//!         if let Command::Visit { page, visitor } = cmd {
//!             stats.or_map("hits").pn_counter(&page).increment(1);
//!             stats.g_set::<String>("visitors").add(&visitor);
//!         }
//!         Ok(stats.value())
//!     }
//! }
//!
//! cella_sdk::export_entity!(crdt Pages);
//! ```

use core::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::cella::entity::types as wit;
use crate::context::Context;
use crate::{Reply, Result};

#[path = "crdt_handles.rs"]
mod handles;
#[path = "crdt_model.rs"]
pub(crate) mod model;

pub use handles::{Flag, GCounter, GSet, LWWRegister, ORMap, ORSet, PNCounter, Vote};

use model::{Mode, Node};

/// An entity whose data is a CRDT owned by the host (see the [module docs](self)).
///
/// The entity type itself holds nothing (a unit struct): its data is [`Data`](Self::Data), a
/// typed handle of the entity's crdt type ([`GCounter`], [`PNCounter`], [`GSet`], [`ORSet`],
/// [`LWWRegister`], [`Flag`], [`ORMap`] or [`Vote`]). Export it with
/// `export_entity!(crdt T)`, or `export_entity!(ephemeral crdt T)` for data kept in memory
/// only (rebuilt from the other nodes' replicas after a restart).
///
/// A crdt entity asks for no effects and forwards nothing: it has no [`Context`],
/// only a [`CrdtContext`].
pub trait CrdtEntity: 'static {
    /// The entity's data: the handle of its crdt type, which names the type in the descriptor.
    type Data: CrdtData;
    /// The commands: a serde enum, externally tagged (see the [crate docs](crate#commands)).
    type Command: DeserializeOwned;

    /// Handles one command: reads `data` and records operations on it. The operations are
    /// applied by the host, in order, only if this returns `Ok`; `Err` rejects the command and
    /// discards them.
    fn handle(data: &mut Self::Data, cmd: Self::Command, ctx: &mut CrdtContext) -> Result<Reply>;
}

/// A typed handle on crdt data: the entity's own data, or the data under a path of map keys.
/// Implemented by the handle types; the [`ORMap`] accessors and [`ORMap::get`] make them.
pub trait CrdtData: Sized {
    /// The crdt type of the data.
    const TYPE: CrdtType;

    /// The handle on the data at `cursor`.
    #[doc(hidden)]
    fn at(cursor: Cursor) -> Self;
}

/// The replicated data type of a crdt entity, or of the data under a map key. Its serde form
/// is the WIT's name: `"g-counter"`, `"pn-counter"`, `"g-set"`, `"or-set"`, `"lww-register"`,
/// `"flag"`, `"or-map"`, `"vote"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrdtType {
    /// A counter that only grows ([`GCounter`]).
    GCounter,
    /// A counter that goes up and down ([`PNCounter`]).
    PnCounter,
    /// A set that only grows ([`GSet`]).
    GSet,
    /// An add-wins set ([`ORSet`]).
    OrSet,
    /// A last-writer-wins register ([`LWWRegister`]).
    LwwRegister,
    /// An enable-wins flag ([`Flag`]).
    Flag,
    /// An add-wins map of string keys to crdt data ([`ORMap`]).
    OrMap,
    /// One vote per node ([`Vote`]).
    Vote,
}

impl core::fmt::Display for CrdtType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CrdtType::GCounter => "g-counter",
            CrdtType::PnCounter => "pn-counter",
            CrdtType::GSet => "g-set",
            CrdtType::OrSet => "or-set",
            CrdtType::LwwRegister => "lww-register",
            CrdtType::Flag => "flag",
            CrdtType::OrMap => "or-map",
            CrdtType::Vote => "vote",
        })
    }
}

/// How many nodes hold a command's change before it is answered. Ordered from the weakest;
/// its serde form is `"local"`, `"majority"` or `"all"`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// This node only; the change reaches the others by gossip (the default).
    #[default]
    Local,
    /// More than half of the cluster's nodes.
    Majority,
    /// Every node of the cluster.
    All,
}

/// Whether an entity's state outlives the node's process (see
/// [`export_entity!`](crate::export_entity)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Journaled (value and event-sourced entities) or stored (crdt entities) before any reply
    /// that depends on the change.
    #[default]
    Durable,
    /// In memory only: a value entity is gone after a restart or a move of its partition, a
    /// crdt entity is rebuilt from the other nodes' replicas.
    Ephemeral,
}

/// What an operation does. Elements and register values are JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum CrdtAction {
    /// g-counter, pn-counter: add this much.
    Increment(u64),
    /// pn-counter: subtract this much.
    Decrement(u64),
    /// g-set, or-set: add the element.
    Add(Value),
    /// or-set: remove the element.
    Remove(Value),
    /// lww-register: write the value (stamped by the host with the command's time).
    Set(Value),
    /// flag: turn on.
    Enable,
    /// flag: turn off.
    Disable,
    /// vote: this node's vote.
    Vote(bool),
    /// or-map: remove the key.
    Delete(String),
    /// or-set, or-map: remove everything; flag: turn off.
    Clear,
}

impl CrdtAction {
    /// The action's WIT name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            CrdtAction::Increment(_) => "increment",
            CrdtAction::Decrement(_) => "decrement",
            CrdtAction::Add(_) => "add",
            CrdtAction::Remove(_) => "remove",
            CrdtAction::Set(_) => "set",
            CrdtAction::Enable => "enable",
            CrdtAction::Disable => "disable",
            CrdtAction::Vote(_) => "vote",
            CrdtAction::Delete(_) => "delete",
            CrdtAction::Clear => "clear",
        }
    }
}

/// One operation a handler recorded: `action` on the data at `path` (map keys, outermost
/// first; empty for the entity's own data), created as `creates` if it does not exist (the
/// handle's own type whenever the path is not empty).
#[derive(Clone, Debug, PartialEq)]
pub struct CrdtOp {
    pub path: Vec<String>,
    pub action: CrdtAction,
    pub creates: Option<CrdtType>,
}

impl CrdtOp {
    /// An operation on the entity's own data.
    pub fn root(action: CrdtAction) -> Self {
        Self {
            path: Vec::new(),
            action,
            creates: None,
        }
    }

    /// An operation on the data at `path`, created as `creates` if new.
    pub fn new<K: Into<String>>(
        path: impl IntoIterator<Item = K>,
        action: CrdtAction,
        creates: Option<CrdtType>,
    ) -> Self {
        Self {
            path: path.into_iter().map(Into::into).collect(),
            action,
            creates,
        }
    }
}

/// The handler's view of a crdt command: the host-chosen facts of the command (as in
/// [`Context`]) and the consistency its change needs before the reply.
#[derive(Debug)]
pub struct CrdtContext {
    ctx: Context,
    consistency: Consistency,
}

impl CrdtContext {
    pub(crate) fn new(ctx: wit::Context) -> Self {
        Self {
            ctx: Context::new(ctx),
            consistency: Consistency::Local,
        }
    }

    /// The entity's type (the module name).
    pub fn entity_type(&self) -> &str {
        self.ctx.entity_type()
    }

    /// The entity's key.
    pub fn key(&self) -> &str {
        self.ctx.key()
    }

    /// The command's unique id, stable across retries.
    pub fn command_id(&self) -> &str {
        self.ctx.command_id()
    }

    /// The command's name.
    pub fn command(&self) -> &str {
        self.ctx.command()
    }

    /// The time of the command chosen by the host, in milliseconds since the Unix epoch (an
    /// [`LWWRegister::set`] is stamped with it).
    pub fn timestamp_ms(&self) -> u64 {
        self.ctx.timestamp_ms()
    }

    /// The host's random seed of this command.
    pub fn random_seed(&self) -> u64 {
        self.ctx.random_seed()
    }

    /// The next number of a pseudo-random sequence seeded by [`random_seed`](Self::random_seed)
    /// (as [`Context::random_u64`](crate::Context::random_u64)).
    pub fn random_u64(&mut self) -> u64 {
        self.ctx.random_u64()
    }

    /// Sets how many nodes must hold this command's change before it is answered
    /// ([`Consistency::Local`] unless set; the last call counts). The request may ask for more
    /// (`?consistency=`), and then the stronger one applies.
    pub fn set_consistency(&mut self, consistency: Consistency) {
        self.consistency = consistency;
    }

    /// The consistency this command asks for so far.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }
}

/// What the handles of one command share: the data as the command changed it, the operations
/// recorded and the first misuse.
#[derive(Debug)]
pub(crate) struct Shared {
    root: Node,
    ops: Vec<CrdtOp>,
    error: Option<String>,
}

/// Where a handle is: the command's shared working copy and a path of map keys into it.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Cursor {
    shared: Rc<RefCell<Shared>>,
    path: Vec<String>,
}

impl Cursor {
    /// The root of a command's data of type `kind` whose value is `view`.
    pub(crate) fn root(kind: CrdtType, view: &Value) -> core::result::Result<Self, String> {
        let root = Node::from_view(kind, view)
            .map_err(|e| format!("the value handed in does not read as type {kind}: {e}"))?;
        Ok(Self {
            shared: Rc::new(RefCell::new(Shared {
                root,
                ops: Vec::new(),
                error: None,
            })),
            path: Vec::new(),
        })
    }

    /// The operations recorded, or the first misuse of a handle.
    pub(crate) fn finish(self) -> core::result::Result<Vec<CrdtOp>, String> {
        let mut shared = self.shared.borrow_mut();
        match shared.error.take() {
            Some(error) => Err(error),
            None => Ok(core::mem::take(&mut shared.ops)),
        }
    }

    pub(crate) fn path(&self) -> &[String] {
        &self.path
    }

    pub(crate) fn child(&self, key: &str) -> Self {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        Self {
            shared: self.shared.clone(),
            path,
        }
    }

    /// The view of the data here (with this command's operations), if it exists.
    pub(crate) fn view(&self) -> Option<Value> {
        self.shared.borrow().root.at(&self.path).map(Node::view)
    }

    /// Records `action` on the data here, a `kind` if it is created.
    pub(crate) fn record(&self, action: CrdtAction, kind: CrdtType) {
        let op = CrdtOp {
            path: self.path.clone(),
            action,
            creates: (!self.path.is_empty()).then_some(kind),
        };
        let mut shared = self.shared.borrow_mut();
        // The guest model never fails: the host judges operations that do not fit.
        let _ = shared.root.apply(&op, Mode::Guest);
        shared.ops.push(op);
    }

    /// Fails the command (the first failure is the one reported).
    pub(crate) fn fail(&self, message: String) {
        self.shared.borrow_mut().error.get_or_insert(message);
    }

    /// Where this is, for messages: `the entity's data` or `the data at a/b`.
    pub(crate) fn place(&self) -> String {
        match self.path.is_empty() {
            true => "the entity's data".to_owned(),
            false => format!("the data at {}", self.path.join("/")),
        }
    }
}

pub(crate) fn wit_type(kind: CrdtType) -> wit::CrdtType {
    match kind {
        CrdtType::GCounter => wit::CrdtType::GCounter,
        CrdtType::PnCounter => wit::CrdtType::PnCounter,
        CrdtType::GSet => wit::CrdtType::GSet,
        CrdtType::OrSet => wit::CrdtType::OrSet,
        CrdtType::LwwRegister => wit::CrdtType::LwwRegister,
        CrdtType::Flag => wit::CrdtType::Flag,
        CrdtType::OrMap => wit::CrdtType::OrMap,
        CrdtType::Vote => wit::CrdtType::Vote,
    }
}

pub(crate) fn from_wit_type(kind: wit::CrdtType) -> CrdtType {
    match kind {
        wit::CrdtType::GCounter => CrdtType::GCounter,
        wit::CrdtType::PnCounter => CrdtType::PnCounter,
        wit::CrdtType::GSet => CrdtType::GSet,
        wit::CrdtType::OrSet => CrdtType::OrSet,
        wit::CrdtType::LwwRegister => CrdtType::LwwRegister,
        wit::CrdtType::Flag => CrdtType::Flag,
        wit::CrdtType::OrMap => CrdtType::OrMap,
        wit::CrdtType::Vote => CrdtType::Vote,
    }
}

pub(crate) fn from_wit_durability(durability: wit::Durability) -> Durability {
    match durability {
        wit::Durability::Durable => Durability::Durable,
        wit::Durability::Ephemeral => Durability::Ephemeral,
    }
}

pub(crate) fn wit_consistency(consistency: Consistency) -> wit::Consistency {
    match consistency {
        Consistency::Local => wit::Consistency::Local,
        Consistency::Majority => wit::Consistency::Majority,
        Consistency::All => wit::Consistency::All,
    }
}

pub(crate) fn from_wit_consistency(consistency: wit::Consistency) -> Consistency {
    match consistency {
        wit::Consistency::Local => Consistency::Local,
        wit::Consistency::Majority => Consistency::Majority,
        wit::Consistency::All => Consistency::All,
    }
}

pub(crate) fn wit_op(op: CrdtOp) -> wit::CrdtOp {
    let text = |value: Value| value.to_string();
    wit::CrdtOp {
        path: op.path,
        action: match op.action {
            CrdtAction::Increment(n) => wit::CrdtAction::Increment(n),
            CrdtAction::Decrement(n) => wit::CrdtAction::Decrement(n),
            CrdtAction::Add(v) => wit::CrdtAction::Add(text(v)),
            CrdtAction::Remove(v) => wit::CrdtAction::Remove(text(v)),
            CrdtAction::Set(v) => wit::CrdtAction::Set(text(v)),
            CrdtAction::Enable => wit::CrdtAction::Enable,
            CrdtAction::Disable => wit::CrdtAction::Disable,
            CrdtAction::Vote(b) => wit::CrdtAction::Vote(b),
            CrdtAction::Delete(k) => wit::CrdtAction::Delete(k),
            CrdtAction::Clear => wit::CrdtAction::Clear,
        },
        creates: op.creates.map(wit_type),
    }
}

/// An operation as the host receives it, back in the SDK's form (for the test kit).
pub(crate) fn from_wit_op(op: wit::CrdtOp) -> core::result::Result<CrdtOp, String> {
    let json = |text: String| {
        serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("an operation's value is not JSON ({e}): {text}"))
    };
    Ok(CrdtOp {
        path: op.path,
        action: match op.action {
            wit::CrdtAction::Increment(n) => CrdtAction::Increment(n),
            wit::CrdtAction::Decrement(n) => CrdtAction::Decrement(n),
            wit::CrdtAction::Add(v) => CrdtAction::Add(json(v)?),
            wit::CrdtAction::Remove(v) => CrdtAction::Remove(json(v)?),
            wit::CrdtAction::Set(v) => CrdtAction::Set(json(v)?),
            wit::CrdtAction::Enable => CrdtAction::Enable,
            wit::CrdtAction::Disable => CrdtAction::Disable,
            wit::CrdtAction::Vote(b) => CrdtAction::Vote(b),
            wit::CrdtAction::Delete(k) => CrdtAction::Delete(k),
            wit::CrdtAction::Clear => CrdtAction::Clear,
        },
        creates: op.creates.map(from_wit_type),
    })
}
