//! Example value entity: a counter. `add` (a number) replies the new total; `get` the total.

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};

#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    pub total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Add(i64),
    Get,
}

impl ValueEntity for Counter {
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

cella_sdk::export_entity!(value Counter);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::{Failure, TestKit};

    use super::Counter;

    #[test]
    fn declares_its_commands() {
        assert_eq!(TestKit::<Counter>::new().commands(), ["add", "get"]);
    }

    #[test]
    fn a_new_counter_is_zero_and_reading_persists_nothing() {
        let mut kit = TestKit::<Counter>::new();
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(0)));
        assert_eq!(kit.sequence(), 0);
    }

    #[test]
    fn add_replies_the_new_total() {
        let mut kit = TestKit::<Counter>::new();
        assert_eq!(kit.handle("add", json!(5)), Ok(json!(5)));
        assert_eq!(kit.handle("add", json!(-7)), Ok(json!(-2)));
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(-2)));
        assert_eq!(kit.state().total, -2);
        assert_eq!(kit.sequence(), 2);
    }

    #[test]
    fn overflow_is_rejected_and_changes_nothing() {
        let mut kit = TestKit::<Counter>::new();
        kit.handle("add", json!(i64::MAX)).ok();
        assert_eq!(
            kit.handle("add", json!(1)),
            Err(Failure::Rejected("adding 1 overflows".into()))
        );
        assert_eq!(kit.handle("get", json!(null)), Ok(json!(i64::MAX)));
    }

    #[test]
    fn bad_payloads_and_unknown_commands_fail() {
        let mut kit = TestKit::<Counter>::new();
        assert!(matches!(
            kit.handle("add", json!("five")),
            Err(Failure::BadRequest(_))
        ));
        assert!(matches!(
            kit.handle("add", json!(null)),
            Err(Failure::BadRequest(_))
        ));
        assert!(matches!(
            kit.handle("add", json!(1.5)),
            Err(Failure::BadRequest(_))
        ));
        assert_eq!(
            kit.handle("reset", json!(null)),
            Err(Failure::UnknownCommand("reset".into()))
        );
    }
}
