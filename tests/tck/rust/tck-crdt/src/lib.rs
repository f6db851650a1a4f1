//! The TCK's crdt model (`tck-crdt`, see tests/tck/SPEC.md): a durable crdt entity whose data is
//! an or-map. `update` runs a list of operations, each on the data at a path of map keys taken
//! through the SDK's typed handle of the type it names, and sets the command's consistency;
//! `get` replies the whole value, or the value at a path read through a typed handle.

use cella_sdk::{
    Consistency, CrdtContext, CrdtEntity, CrdtType, ORMap, Rejection, Reply, Result, Value, json,
};
use serde::Deserialize;

pub struct TckCrdt;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Update(Update),
    Get(Option<At>),
}

/// The payload of `update`.
#[derive(Deserialize)]
pub struct Update {
    pub ops: Vec<Op>,
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

/// One operation: `action` on the data of type `type` at `path`.
#[derive(Deserialize)]
pub struct Op {
    pub path: Vec<String>,
    #[serde(rename = "type")]
    pub crdt: CrdtType,
    pub action: Action,
}

/// What an operation does: `{"increment": N}`, ..., or `"enable"`, `"disable"`, `"clear"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Increment(u64),
    Decrement(u64),
    Add(Value),
    Remove(Value),
    Set(Value),
    Enable,
    Disable,
    Vote(bool),
    Delete(String),
    Clear,
}

/// The payload of `get` that reads through a typed handle.
#[derive(Deserialize)]
pub struct At {
    pub path: Vec<String>,
    #[serde(rename = "type")]
    pub crdt: CrdtType,
}

impl CrdtEntity for TckCrdt {
    type Data = ORMap;
    type Command = Command;

    fn handle(data: &mut ORMap, cmd: Command, ctx: &mut CrdtContext) -> Result<Reply> {
        match cmd {
            Command::Update(Update { ops, consistency }) => {
                for (i, op) in ops.iter().enumerate() {
                    check(op.crdt, &op.path)
                        .and_then(|()| run(data, op))
                        .map_err(|e| Rejection::bad_request(format!("ops[{i}]: {e}")))?;
                }
                ctx.set_consistency(consistency.unwrap_or_default());
                Ok(json!({ "applied": ops.len() }))
            }
            Command::Get(None) => Ok(json!({ "value": data.value() })),
            Command::Get(Some(At { path, crdt })) => {
                check(crdt, &path).map_err(Rejection::bad_request)?;
                Ok(json!({ "value": read(data, &path, crdt) }))
            }
        }
    }
}

cella_sdk::export_entity!(crdt TckCrdt);

/// An empty path is the entity's own map.
fn check(crdt: CrdtType, path: &[String]) -> core::result::Result<(), String> {
    match path.is_empty() && crdt != CrdtType::OrMap {
        true => Err(format!(
            "an empty path is the entity's or-map, not data of type {crdt}"
        )),
        false => Ok(()),
    }
}

/// The map holding the data at `path` (not empty), and the data's key in it.
fn parent<'p>(root: &ORMap, path: &'p [String]) -> (ORMap, &'p str) {
    let (key, outer) = path
        .split_last()
        .map_or(("", path), |(k, o)| (k.as_str(), o));
    let map = outer.iter().fold(root.clone(), |map, key| map.or_map(key));
    (map, key)
}

/// Does `op` through the typed handle of its type.
fn run(root: &mut ORMap, op: &Op) -> core::result::Result<(), String> {
    use Action as A;
    use CrdtType as T;
    let (map, key) = parent(root, &op.path);
    match (op.crdt, &op.action) {
        (T::GCounter, A::Increment(n)) => map.g_counter(key).increment(*n),
        (T::PnCounter, A::Increment(n)) => map.pn_counter(key).increment(*n),
        (T::PnCounter, A::Decrement(n)) => map.pn_counter(key).decrement(*n),
        (T::GSet, A::Add(v)) => map.g_set::<Value>(key).add(v),
        (T::OrSet, A::Add(v)) => map.or_set::<Value>(key).add(v),
        (T::OrSet, A::Remove(v)) => map.or_set::<Value>(key).remove(v),
        (T::OrSet, A::Clear) => map.or_set::<Value>(key).clear(),
        (T::LwwRegister, A::Set(v)) => map.lww_register::<Value>(key).set(v),
        (T::Flag, A::Enable) => map.flag(key).enable(),
        (T::Flag, A::Disable) => map.flag(key).disable(),
        (T::Flag, A::Clear) => map.flag(key).clear(),
        (T::OrMap, A::Delete(k)) => target_map(root, &op.path).delete(k),
        (T::OrMap, A::Clear) => target_map(root, &op.path).clear(),
        (T::Vote, A::Vote(b)) => map.vote(key).vote(*b),
        (crdt, action) => return Err(format!("type {crdt} does not take the action {action:?}")),
    }
    Ok(())
}

/// The map at `path`: the root for an empty path.
fn target_map(root: &ORMap, path: &[String]) -> ORMap {
    path.iter().fold(root.clone(), |map, key| map.or_map(key))
}

/// The value at `path` read through the handle of `crdt`; `null` where the path does not exist.
fn read(root: &ORMap, path: &[String], crdt: CrdtType) -> Value {
    let mut map = root.clone();
    for key in path {
        if !map.contains_key(key) {
            return Value::Null;
        }
        map = map.or_map(key);
    }
    let (map, key) = parent(root, path);
    match crdt {
        CrdtType::GCounter => json!(map.g_counter(key).value()),
        CrdtType::PnCounter => json!(map.pn_counter(key).value()),
        CrdtType::GSet => json!(map.g_set::<Value>(key).elements()),
        CrdtType::OrSet => json!(map.or_set::<Value>(key).elements()),
        CrdtType::LwwRegister => map
            .lww_register::<Value>(key)
            .value()
            .unwrap_or(Value::Null),
        CrdtType::Flag => json!(map.flag(key).is_enabled()),
        CrdtType::OrMap => target_map(root, path).value(),
        CrdtType::Vote => {
            let vote = map.vote(key);
            json!({
                "votes_for": vote.votes_for(),
                "voters": vote.voters(),
                "majority": vote.majority(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
