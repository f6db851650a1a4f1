//! A single-replica model of a crdt entity's data, built from the JSON view the host hands a
//! handler: the handles read through it (so a command reads its own operations), and the test
//! kit keeps one as the replica it runs commands against. It follows the host's rules for one
//! replica: counters add, sets keep their elements in the order of their canonical JSON text, a
//! register holds the last value set, a map creates a key's data with the type the operation
//! names (or implies) and keeps a deleted key's data, which comes back if the key is written
//! again.
//!
//! The view does not say which type a map key's data is, so data read from a view gets the most
//! permissive type of its JSON shape (a number a pn-counter, an array an or-set, an object with
//! just `votes_for`, `voters` and `majority` a vote, ...) and takes another type's operation when
//! its view reads as that type (a number register written with `set`). Data created by an
//! operation has the exact type.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::crdt::{CrdtAction, CrdtOp, CrdtType};

/// The most map keys an operation's path may have (the host fails a command with a deeper one).
pub(crate) const MAX_PATH: usize = 32;

/// How an operation that does not fit its data is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In a handler: the host decides (it fails the command), so the model skips the operation;
    /// a vote is not modelled (the view does not say whether this node voted before).
    Guest,
    /// In the test kit, as the only replica: a misfit is an error, as on the host.
    Replica,
}

/// The data at one place: its type, whether the type is known or only read from a view, and
/// its content.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    kind: CrdtType,
    exact: bool,
    data: Data,
}

#[derive(Clone, Debug, PartialEq)]
enum Data {
    Counter(i128),
    /// Canonical JSON text → the element.
    Set(BTreeMap<String, Value>),
    /// `Null` before the first `set`.
    Register(Value),
    Flag(bool),
    Map {
        live: BTreeMap<String, Node>,
        deleted: BTreeMap<String, Node>,
    },
    /// The votes of the other replicas, and this one's.
    Vote {
        others_for: u64,
        others: u64,
        mine: Option<bool>,
    },
}

impl Node {
    /// Empty data of `kind`.
    pub(crate) fn empty(kind: CrdtType) -> Node {
        let data = match kind {
            CrdtType::GCounter | CrdtType::PnCounter => Data::Counter(0),
            CrdtType::GSet | CrdtType::OrSet => Data::Set(BTreeMap::new()),
            CrdtType::LwwRegister => Data::Register(Value::Null),
            CrdtType::Flag => Data::Flag(false),
            CrdtType::OrMap => Data::Map {
                live: BTreeMap::new(),
                deleted: BTreeMap::new(),
            },
            CrdtType::Vote => Data::Vote {
                others_for: 0,
                others: 0,
                mine: None,
            },
        };
        Node {
            kind,
            exact: true,
            data,
        }
    }

    /// The data of `kind` whose view is `view`, or why the view is not one of that type.
    pub(crate) fn from_view(kind: CrdtType, view: &Value) -> Result<Node, String> {
        let data = match (kind, view) {
            (CrdtType::GCounter | CrdtType::PnCounter, Value::Number(_)) => {
                Data::Counter(number(view))
            }
            (CrdtType::GSet | CrdtType::OrSet, Value::Array(items)) => Data::Set(
                items
                    .iter()
                    .map(|item| (canonical(item), item.clone()))
                    .collect(),
            ),
            (CrdtType::LwwRegister, value) => Data::Register(value.clone()),
            (CrdtType::Flag, Value::Bool(on)) => Data::Flag(*on),
            (CrdtType::OrMap, Value::Object(entries)) => Data::Map {
                live: entries
                    .iter()
                    .map(|(key, value)| (key.clone(), Node::inferred(value)))
                    .collect(),
                deleted: BTreeMap::new(),
            },
            (CrdtType::Vote, view) => match vote_view(view) {
                Some((votes_for, voters)) => Data::Vote {
                    others_for: votes_for,
                    others: voters,
                    mine: None,
                },
                None => return Err(format!("{view} is not a value of type {kind}")),
            },
            (kind, view) => return Err(format!("{view} is not a value of type {kind}")),
        };
        Ok(Node {
            kind,
            exact: true,
            data,
        })
    }

    /// The data whose view is `view`, typed by its JSON shape (not exact).
    fn inferred(view: &Value) -> Node {
        let kind = match view {
            Value::Number(_) => CrdtType::PnCounter,
            Value::Array(_) => CrdtType::OrSet,
            Value::Bool(_) => CrdtType::Flag,
            Value::Object(_) if vote_view(view).is_some() => CrdtType::Vote,
            Value::Object(_) => CrdtType::OrMap,
            Value::Null | Value::String(_) => CrdtType::LwwRegister,
        };
        match Node::from_view(kind, view) {
            Ok(node) => Node {
                exact: false,
                ..node
            },
            // Every shape above reads as its kind.
            Err(_) => Node::empty(CrdtType::LwwRegister),
        }
    }

    /// The type of this data.
    pub(crate) fn kind(&self) -> CrdtType {
        self.kind
    }

    /// The JSON view of this data, as the host renders it.
    pub(crate) fn view(&self) -> Value {
        match &self.data {
            Data::Counter(n) => number_value(*n),
            Data::Set(elements) => Value::Array(elements.values().cloned().collect()),
            Data::Register(value) => value.clone(),
            Data::Flag(on) => Value::Bool(*on),
            Data::Map { live, .. } => Value::Object(
                live.iter()
                    .map(|(key, node)| (key.clone(), node.view()))
                    .collect(),
            ),
            Data::Vote {
                others_for,
                others,
                mine,
            } => {
                let votes_for = others_for + u64::from(*mine == Some(true));
                let voters = others + u64::from(mine.is_some());
                serde_json::json!({
                    "votes_for": votes_for,
                    "voters": voters,
                    "majority": votes_for * 2 > voters,
                })
            }
        }
    }

    /// The data at `path` (map keys from here), if it exists.
    pub(crate) fn at(&self, path: &[String]) -> Option<&Node> {
        match path.split_first() {
            None => Some(self),
            Some((key, rest)) => match &self.data {
                Data::Map { live, .. } => live.get(key)?.at(rest),
                _ => None,
            },
        }
    }

    /// Applies `op` to this (root) data. In [`Mode::Replica`] an operation that does not fit
    /// its data fails, and may have changed part of it (apply a command's operations to a
    /// copy); in [`Mode::Guest`] such an operation is skipped.
    pub(crate) fn apply(&mut self, op: &CrdtOp, mode: Mode) -> Result<(), String> {
        if op.path.len() > MAX_PATH {
            return match mode {
                Mode::Guest => Ok(()),
                Mode::Replica => Err(format!(
                    "an operation's path is {} keys deep (at most {MAX_PATH})",
                    op.path.len()
                )),
            };
        }
        let result = self.apply_at(&op.path, op, mode);
        match mode {
            Mode::Guest => Ok(()),
            Mode::Replica => result.map_err(|e| match op.path.is_empty() {
                true => e,
                false => format!("at {}: {e}", op.path.join("/")),
            }),
        }
    }

    fn apply_at(&mut self, path: &[String], op: &CrdtOp, mode: Mode) -> Result<(), String> {
        let Some((key, rest)) = path.split_first() else {
            return self.act(&op.action, op.creates, mode);
        };
        self.fit(CrdtType::OrMap, mode)?;
        let Data::Map { live, deleted } = &mut self.data else {
            return Err(format!("data of type {} has no keys", self.kind));
        };
        if let Some(child) = live.get_mut(key) {
            return child.apply_at(rest, op, mode);
        }
        let mut child = match deleted.remove(key) {
            Some(old) => old,
            None => {
                let creates = match rest.is_empty() {
                    true => op.creates.or_else(|| implied(&op.action)),
                    false => Some(CrdtType::OrMap),
                };
                // A clear of data that was never written: nothing to do.
                let Some(kind) = creates else { return Ok(()) };
                Node::empty(kind)
            }
        };
        let result = child.apply_at(rest, op, mode);
        live.insert(key.clone(), child);
        result
    }

    /// Makes this data take operations of `kind`: data typed by its view becomes `kind` when
    /// its view reads as one.
    fn fit(&mut self, kind: CrdtType, mode: Mode) -> Result<(), String> {
        if self.kind == kind || (!self.exact && takes(self.kind, kind)) {
            return Ok(());
        }
        if !self.exact
            && let Ok(node) = Node::from_view(kind, &self.view())
        {
            *self = node;
            return Ok(());
        }
        if mode == Mode::Guest && !self.exact {
            *self = Node::empty(kind);
            return Ok(());
        }
        Err(format!("the data is of type {}, not {kind}", self.kind))
    }

    fn act(
        &mut self,
        action: &CrdtAction,
        creates: Option<CrdtType>,
        mode: Mode,
    ) -> Result<(), String> {
        let have = self.kind;
        let misfit = || format!("{} does not apply to data of type {have}", action.name());
        if !fits(self.kind, action) {
            match creates.or_else(|| implied(action)) {
                Some(kind) if fits(kind, action) => self.fit(kind, mode).map_err(|_| misfit())?,
                _ => return Err(misfit()),
            }
        }
        match (&mut self.data, action) {
            (Data::Counter(n), CrdtAction::Increment(by)) => {
                *n = n
                    .checked_add(i128::from(*by))
                    .ok_or("the counter overflows")?;
            }
            (Data::Counter(n), CrdtAction::Decrement(by)) => {
                *n = n
                    .checked_sub(i128::from(*by))
                    .ok_or("the counter overflows")?;
            }
            (Data::Set(elements), CrdtAction::Add(element)) => {
                elements.insert(canonical(element), element.clone());
            }
            (Data::Set(elements), CrdtAction::Remove(element)) => {
                elements.remove(&canonical(element));
            }
            (Data::Set(elements), CrdtAction::Clear) => elements.clear(),
            (Data::Register(value), CrdtAction::Set(new)) => *value = new.clone(),
            (Data::Flag(on), CrdtAction::Enable) => *on = true,
            (Data::Flag(on), CrdtAction::Disable | CrdtAction::Clear) => *on = false,
            (Data::Map { live, deleted }, CrdtAction::Delete(key)) => {
                if let Some(node) = live.remove(key) {
                    deleted.insert(key.clone(), node);
                }
            }
            (Data::Map { live, deleted }, CrdtAction::Clear) => {
                deleted.append(live);
            }
            (Data::Vote { mine, .. }, CrdtAction::Vote(vote)) => {
                if mode == Mode::Replica {
                    *mine = Some(*vote);
                }
            }
            _ => return Err(misfit()),
        }
        Ok(())
    }
}

/// Whether data of `kind` takes `action`.
fn fits(kind: CrdtType, action: &CrdtAction) -> bool {
    use CrdtAction as A;
    use CrdtType as T;
    matches!(
        (kind, action),
        (T::GCounter | T::PnCounter, A::Increment(_))
            | (T::PnCounter, A::Decrement(_))
            | (T::GSet | T::OrSet, A::Add(_))
            | (T::OrSet, A::Remove(_) | A::Clear)
            | (T::LwwRegister, A::Set(_))
            | (T::Flag, A::Enable | A::Disable | A::Clear)
            | (T::OrMap, A::Delete(_) | A::Clear)
            | (T::Vote, A::Vote(_))
    )
}

/// Whether data typed by its view as `have` (the most permissive type of its shape) may be
/// data of `want` without converting (a pn-counter's view is a g-counter's too).
fn takes(have: CrdtType, want: CrdtType) -> bool {
    matches!(
        (have, want),
        (CrdtType::PnCounter, CrdtType::GCounter) | (CrdtType::OrSet, CrdtType::GSet)
    )
}

/// The type an action gives the data it creates in a map (the host's rule without `creates`).
fn implied(action: &CrdtAction) -> Option<CrdtType> {
    match action {
        CrdtAction::Increment(_) | CrdtAction::Decrement(_) => Some(CrdtType::PnCounter),
        CrdtAction::Add(_) | CrdtAction::Remove(_) => Some(CrdtType::OrSet),
        CrdtAction::Set(_) => Some(CrdtType::LwwRegister),
        CrdtAction::Enable | CrdtAction::Disable => Some(CrdtType::Flag),
        CrdtAction::Vote(_) => Some(CrdtType::Vote),
        CrdtAction::Delete(_) => Some(CrdtType::OrMap),
        CrdtAction::Clear => None,
    }
}

/// `(votes_for, voters)` of a vote's view.
fn vote_view(view: &Value) -> Option<(u64, u64)> {
    let object = view.as_object()?;
    if object.len() != 3 || !object.get("majority")?.is_boolean() {
        return None;
    }
    Some((
        object.get("votes_for")?.as_u64()?,
        object.get("voters")?.as_u64()?,
    ))
}

/// A JSON number as an integer (a float saturates; anything else is 0).
pub(crate) fn number(view: &Value) -> i128 {
    if let Some(n) = view.as_i64() {
        i128::from(n)
    } else if let Some(n) = view.as_u64() {
        i128::from(n)
    } else {
        // `as` saturates, and a NaN (which JSON cannot hold) would be 0.
        view.as_f64().map_or(0, |f| f as i128)
    }
}

/// An integer as the host renders it: exact when it fits 64 bits, else the nearest float.
fn number_value(n: i128) -> Value {
    if let Ok(n) = i64::try_from(n) {
        Value::from(n)
    } else if let Ok(n) = u64::try_from(n) {
        Value::from(n)
    } else {
        serde_json::Number::from_f64(n as f64).map_or(Value::Null, Value::Number)
    }
}

/// The canonical JSON text of `value`: objects' keys sorted, no whitespace. Equal values have
/// one text; sets are ordered by it.
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
