//! Example crdt entity: likes, a durable pn-counter that every node serves without consensus.
//! `like` and `unlike` (payload `null`, or `{"consistency": "majority"}` or `{"consistency":
//! "all"}`, or just `"majority"` or `"all"`, to wait for that many nodes to hold the change) reply
//! the count this node now sees: the value handed in plus this command's change; `count` replies
//! the value.

use cella_sdk::{Consistency, CrdtContext, CrdtEntity, Deserialize, PNCounter, Reply, Result};
use cella_sdk::{Value, json};
use serde::Deserializer;
use serde::de::Error as _;

/// The likes of one item (the entity's key).
pub struct Likes;

/// How a `like` or `unlike` is acknowledged: by this node (the default), or once a majority or
/// all of the nodes hold it. The payload `{"consistency": C}`, or just `C`, with `C` one of
/// `"local"`, `"majority"`, `"all"` (`{}` is `"local"`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub consistency: Consistency,
}

impl<'de> Deserialize<'de> for Options {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> core::result::Result<Self, D::Error> {
        let payload = Value::deserialize(deserializer)?;
        let named = match &payload {
            Value::Object(fields) if fields.keys().all(|k| k == "consistency") => {
                fields.get("consistency")
            }
            Value::String(_) => Some(&payload),
            _ => {
                return Err(D::Error::custom(format!(
                    "expected null, {{\"consistency\": C}} or C, with C one of \"local\", \
                     \"majority\", \"all\"; got {payload}"
                )));
            }
        };
        let consistency = match named {
            None => Consistency::Local,
            Some(named) => Consistency::deserialize(named.clone()).map_err(D::Error::custom)?,
        };
        Ok(Options { consistency })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Like(Option<Options>),
    Unlike(Option<Options>),
    Count,
}

impl CrdtEntity for Likes {
    type Data = PNCounter;
    type Command = Command;

    fn handle(likes: &mut PNCounter, cmd: Command, ctx: &mut CrdtContext) -> Result<Reply> {
        match cmd {
            Command::Like(options) => {
                ctx.set_consistency(options.unwrap_or_default().consistency);
                likes.increment(1);
            }
            Command::Unlike(options) => {
                ctx.set_consistency(options.unwrap_or_default().consistency);
                likes.decrement(1);
            }
            Command::Count => {}
        }
        Ok(json!(likes.value()))
    }
}

cella_sdk::export_entity!(crdt Likes);

#[cfg(test)]
mod tests {
    use cella_sdk::crdt::{CrdtAction, CrdtOp};
    use cella_sdk::testing::{CrdtTestKit, Failure};
    use cella_sdk::{Consistency, CrdtType, Durability, json};

    use super::Likes;

    #[test]
    fn is_a_durable_pn_counter() {
        let kit = CrdtTestKit::<Likes>::new();
        assert_eq!(kit.commands(), ["like", "unlike", "count"]);
        assert_eq!(kit.crdt_type(), CrdtType::PnCounter);
        assert_eq!(kit.durability(), Durability::Durable);
        assert_eq!(kit.value(), json!(0));
    }

    #[test]
    fn like_and_unlike_reply_the_count_this_node_now_sees() {
        let mut kit = CrdtTestKit::<Likes>::new();
        assert_eq!(kit.handle("like", json!(null)), Ok(json!(1)));
        let last = kit.last().unwrap();
        assert_eq!(last.ops, [CrdtOp::root(CrdtAction::Increment(1))]);
        assert_eq!(last.consistency, Consistency::Local);
        assert_eq!(kit.handle("like", json!(null)), Ok(json!(2)));
        assert_eq!(kit.handle("unlike", json!(null)), Ok(json!(1)));
        assert_eq!(
            kit.last().unwrap().ops,
            [CrdtOp::root(CrdtAction::Decrement(1))]
        );
        assert_eq!(kit.handle("count", json!(null)), Ok(json!(1)));
        assert!(kit.last().unwrap().ops.is_empty());
    }

    #[test]
    fn the_reply_adds_the_change_to_the_merged_value() {
        // The value handed in is what this node merged from every node's replica.
        let mut kit = CrdtTestKit::<Likes>::new();
        kit.set_value(json!(41));
        assert_eq!(kit.handle("like", json!(null)), Ok(json!(42)));
        kit.set_value(json!(-3));
        assert_eq!(kit.handle("unlike", json!(null)), Ok(json!(-4)));
    }

    #[test]
    fn the_payload_names_the_consistency() {
        let mut kit = CrdtTestKit::<Likes>::new();
        kit.handle("like", json!({"consistency": "majority"}))
            .unwrap();
        assert_eq!(kit.last().unwrap().consistency, Consistency::Majority);
        kit.handle("unlike", json!({"consistency": "all"})).unwrap();
        assert_eq!(kit.last().unwrap().consistency, Consistency::All);
        kit.handle("like", json!({})).unwrap();
        assert_eq!(kit.last().unwrap().consistency, Consistency::Local);
        kit.handle("like", json!("majority")).unwrap();
        assert_eq!(kit.last().unwrap().consistency, Consistency::Majority);
        assert_eq!(kit.value(), json!(2));
    }

    #[test]
    fn bad_payloads_are_bad_requests() {
        let mut kit = CrdtTestKit::<Likes>::new();
        for payload in [
            json!({"consistency": "most"}),
            json!({"consistency": 2}),
            json!({"quorum": "all"}),
            json!("most"),
            json!(1),
        ] {
            assert!(
                matches!(
                    kit.handle("like", payload.clone()),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
        assert!(matches!(
            kit.handle("count", json!({})),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(
            kit.handle("share", json!(null)),
            Err(Failure::UnknownCommand("share".into()))
        );
        assert_eq!(kit.value(), json!(0));
    }
}
