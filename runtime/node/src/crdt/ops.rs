//! A crdt entity's answer in `cella-crdt`'s terms: the [`CrdtType`] of a descriptor as a
//! [`Kind`], and the guest's [`CrdtOp`]s (an action at the end of a path of map keys, values as
//! JSON text) as nested [`Op`]s. A malformed operation names what is wrong.

use cella_crdt::{Kind, Op};
use cella_host::{CrdtAction, CrdtOp, CrdtType};
use serde_json::Value;

/// The `cella-crdt` kind of a crdt type.
pub fn kind_of(t: CrdtType) -> Kind {
    match t {
        CrdtType::GCounter => Kind::GCounter,
        CrdtType::PnCounter => Kind::PNCounter,
        CrdtType::GSet => Kind::GSet,
        CrdtType::OrSet => Kind::ORSet,
        CrdtType::LwwRegister => Kind::LWWRegister,
        CrdtType::Flag => Kind::Flag,
        CrdtType::OrMap => Kind::ORMap,
        CrdtType::Vote => Kind::Vote,
    }
}

/// Parses a guest's JSON text.
fn json(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the {what} `{text}` is not JSON: {e}"))
}

/// The operation `op` stands for, with `timestamp_ms` stamping a register write.
pub fn to_op(op: &CrdtOp, timestamp_ms: u64) -> Result<Op, String> {
    let mut inner = match &op.action {
        CrdtAction::Increment(n) => Op::Increment(*n),
        CrdtAction::Decrement(n) => Op::Decrement(*n),
        CrdtAction::Add(v) => Op::Add(json("element", v)?),
        CrdtAction::Remove(v) => Op::Remove(json("element", v)?),
        CrdtAction::Set(v) => Op::Set {
            value: json("register value", v)?,
            timestamp: timestamp_ms,
        },
        CrdtAction::Enable => Op::Enable,
        CrdtAction::Disable => Op::Disable,
        CrdtAction::Vote(b) => Op::Vote(*b),
        CrdtAction::Delete(key) => Op::Delete(key.clone()),
        CrdtAction::Clear => Op::Clear,
    };
    for (depth, key) in op.path.iter().enumerate().rev() {
        inner = match op.creates {
            // The innermost key's data is what `creates` names; the keys above it are maps.
            Some(t) if depth + 1 == op.path.len() => {
                Op::Create(key.clone(), kind_of(t), inner.into())
            }
            _ => Op::Update(key.clone(), inner.into()),
        };
    }
    if op.path.len() > cella_crdt::MAX_MAP_NESTING as usize {
        return Err(format!(
            "an operation's path is {} keys deep (at most {})",
            op.path.len(),
            cella_crdt::MAX_MAP_NESTING
        ));
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_nest_and_creates_names_the_innermost_kind() {
        let op = CrdtOp {
            path: vec!["a".into(), "b".into()],
            action: CrdtAction::Increment(2),
            creates: Some(CrdtType::GCounter),
        };
        assert_eq!(
            to_op(&op, 0).unwrap(),
            Op::Update(
                "a".into(),
                Box::new(Op::Create(
                    "b".into(),
                    Kind::GCounter,
                    Box::new(Op::Increment(2))
                ))
            )
        );
        let set = CrdtOp {
            path: vec![],
            action: CrdtAction::Set(r#"{"x":1}"#.into()),
            creates: None,
        };
        assert_eq!(
            to_op(&set, 7).unwrap(),
            Op::Set {
                value: json!({"x": 1}),
                timestamp: 7
            }
        );
        let bad = CrdtOp {
            path: vec![],
            action: CrdtAction::Add("{nope".into()),
            creates: None,
        };
        assert!(to_op(&bad, 0).unwrap_err().contains("not JSON"));
    }
}
