//! Test guest for ephemeral value entities: a counter the host keeps in memory only. `add` (an
//! integer) replies the new total; `get` (`null`) replies the total. State `{"total": N}`.

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};

#[derive(Default, Serialize, Deserialize)]
pub struct Visits {
    pub total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Add(i64),
    Get,
}

impl ValueEntity for Visits {
    type Command = Command;

    fn handle(&mut self, cmd: Command, _ctx: &mut Context) -> Result<Reply> {
        if let Command::Add(n) = cmd {
            let Some(total) = self.total.checked_add(n) else {
                reject!("adding {n} overflows")
            };
            self.total = total;
        }
        Ok(json!(self.total))
    }
}

cella_sdk::export_entity!(ephemeral value Visits);

#[cfg(test)]
mod tests {
    use cella_sdk::testing::{Failure, TestKit};
    use cella_sdk::{Durability, json};

    use super::Visits;

    #[test]
    fn an_ephemeral_counter() {
        let mut kit = TestKit::<Visits>::new();
        assert_eq!(kit.durability(), Durability::Ephemeral);
        assert_eq!(kit.commands(), ["add", "get"]);
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(0)));
        assert_eq!(kit.handle("add", json!(3)), Ok(json!(3)));
        assert_eq!(kit.handle("add", json!(-1)), Ok(json!(2)));
        assert_eq!(kit.state_json(), Some(json!({"total": 2})));
        assert!(matches!(
            kit.handle("add", json!("x")),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(2)));
    }
}
