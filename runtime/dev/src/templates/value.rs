//! `{{name}}`: a Cella value entity, made with `cella new`. Its state is a running total: `add`
//! (a number) adds to it and replies the new total, `get` replies it.
//!
//! Run it with `cella dev` (it rebuilds and reloads on every save), then try
//! `curl -X POST localhost:8080/v1/entities/{{name}}/alice/add -d 5`.

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};

/// The state: persisted whole (as JSON) after every command that changes it.
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    pub total: i64,
}

/// The commands: a variant's name is the command name (kebab-case), its content the payload.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Add(i64),
    Get,
}

impl ValueEntity for Counter {
    type Command = Command;

    fn handle(&mut self, cmd: Command, _ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Add(n) => {
                let Some(total) = self.total.checked_add(n) else {
                    reject!("adding {n} would overflow the total");
                };
                self.total = total;
            }
            Command::Get => {}
        }
        Ok(json!(self.total))
    }
}

cella_sdk::export_entity!(value Counter);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::{Failure, TestKit};

    use super::Counter;

    #[test]
    fn add_replies_the_new_total() {
        let mut kit = TestKit::<Counter>::new();
        assert_eq!(kit.commands(), ["add", "get"]);
        assert_eq!(kit.handle("add", json!(5)), Ok(json!(5)));
        assert_eq!(kit.handle("add", json!(-2)), Ok(json!(3)));
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(3)));
        assert_eq!(kit.state().total, 3);
        // `get` changed nothing, so only the two `add`s were persisted.
        assert_eq!(kit.sequence(), 2);
    }

    #[test]
    fn overflow_is_rejected_and_changes_nothing() {
        let mut kit = TestKit::<Counter>::new();
        assert_eq!(kit.handle("add", json!(i64::MAX)), Ok(json!(i64::MAX)));
        assert_eq!(
            kit.handle("add", json!(1)),
            Err(Failure::Rejected(
                "adding 1 would overflow the total".into()
            ))
        );
        assert_eq!(kit.state().total, i64::MAX);
        assert!(matches!(
            kit.handle("add", json!("five")),
            Err(Failure::BadRequest(_))
        ));
    }
}
