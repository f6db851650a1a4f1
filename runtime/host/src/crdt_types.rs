//! The host's types for crdt and ephemeral entities: an entity type's [`Durability`], the
//! [`CrdtType`] of a crdt entity's data, the [`Consistency`] a command asks of its change, and
//! the operations ([`CrdtOp`]) a crdt entity answers with. The host passes them through; the
//! node turns operations into its replicas' changes.

/// Whether an entity's state outlives the node's process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Journaled (value, event-sourced) or stored (crdt) before a reply that depends on it.
    #[default]
    Durable,
    /// In memory only (value and crdt entities).
    Ephemeral,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Durable => "durable",
            Durability::Ephemeral => "ephemeral",
        }
    }
}

/// The replicated data type of a crdt entity (or of the data at a map key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrdtType {
    GCounter,
    PnCounter,
    GSet,
    OrSet,
    LwwRegister,
    Flag,
    OrMap,
    Vote,
}

impl CrdtType {
    /// The WIT name, e.g. `"pn-counter"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CrdtType::GCounter => "g-counter",
            CrdtType::PnCounter => "pn-counter",
            CrdtType::GSet => "g-set",
            CrdtType::OrSet => "or-set",
            CrdtType::LwwRegister => "lww-register",
            CrdtType::Flag => "flag",
            CrdtType::OrMap => "or-map",
            CrdtType::Vote => "vote",
        }
    }
}

/// How many nodes hold a crdt change before its command is answered (or contribute to what a
/// command reads). Ordered: a stronger consistency is greater.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// This node only.
    #[default]
    Local,
    /// More than half of the cluster's nodes.
    Majority,
    /// Every node of the cluster.
    All,
}

impl Consistency {
    /// Parses `local`, `majority` or `all`.
    pub fn parse(text: &str) -> Option<Consistency> {
        match text {
            "local" => Some(Consistency::Local),
            "majority" => Some(Consistency::Majority),
            "all" => Some(Consistency::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Local => "local",
            Consistency::Majority => "majority",
            Consistency::All => "all",
        }
    }
}

/// What a crdt operation does; elements and register values are JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdtAction {
    Increment(u64),
    Decrement(u64),
    Add(String),
    Remove(String),
    Set(String),
    Enable,
    Disable,
    Vote(bool),
    Delete(String),
    Clear,
}

/// One operation of a crdt entity: `action` on the data at the end of `path` (map keys,
/// outermost first; empty for the entity's own data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdtOp {
    pub path: Vec<String>,
    pub action: CrdtAction,
    /// The type the data at the end of `path` gets if the operation creates it.
    pub creates: Option<CrdtType>,
}
