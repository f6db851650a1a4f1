//! Test guest for ephemeral crdt entities: who is present, an add-wins set of names the host
//! keeps in memory only (rebuilt from the other nodes' replicas). `join` and `leave` take a name
//! (a JSON string); every command replies the set as this node now sees it (an array).

use cella_sdk::{CrdtContext, CrdtEntity, Deserialize, ORSet, Reply, Result, json};

pub struct Presence;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Join(String),
    Leave(String),
    List,
}

impl CrdtEntity for Presence {
    type Data = ORSet<String>;
    type Command = Command;

    fn handle(present: &mut ORSet<String>, cmd: Command, _ctx: &mut CrdtContext) -> Result<Reply> {
        match cmd {
            Command::Join(name) => present.add(&name),
            Command::Leave(name) => present.remove(&name),
            Command::List => {}
        }
        Ok(json!(present.elements()))
    }
}

cella_sdk::export_entity!(ephemeral crdt Presence);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{CrdtTestKit, Failure};
    use cella_sdk::{CrdtType, Durability, json};

    use super::Presence;

    #[test]
    fn an_ephemeral_or_set() {
        let mut kit = CrdtTestKit::<Presence>::new();
        assert_eq!(
            (kit.crdt_type(), kit.durability()),
            (CrdtType::OrSet, Durability::Ephemeral)
        );
        assert_eq!(kit.commands(), ["join", "leave", "list"]);
        assert_eq!(kit.handle("join", json!("bob")), Ok(json!(["bob"])));
        assert_eq!(kit.handle("join", json!("ann")), Ok(json!(["ann", "bob"])));
        assert_eq!(kit.handle("join", json!("ann")), Ok(json!(["ann", "bob"])));
        assert_eq!(kit.handle("leave", json!("bob")), Ok(json!(["ann"])));
        assert_eq!(kit.handle("list", json!(null)), Ok(json!(["ann"])));
        assert!(matches!(
            kit.handle("join", json!(1)),
            Err(Failure::BadRequest(_))
        ));
    }
}
