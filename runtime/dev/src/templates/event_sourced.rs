//! `{{name}}`: a Cella event-sourced entity, made with `cella new`. A ledger: `deposit` and
//! `withdraw` (an amount) record events and reply the new balance, `balance` replies it. A
//! withdrawal larger than the balance is rejected. The state is the fold of the events.
//!
//! Run it with `cella dev` (it rebuilds and reloads on every save), then try
//! `curl -X POST localhost:8080/v1/entities/{{name}}/alice/deposit -d 10`.

use cella_sdk::{
    Deserialize, EventContext, EventSourcedEntity, Reply, Result, Serialize, json, reject,
};

/// The state: rebuilt by folding the events with [`EventSourcedEntity::apply`].
#[derive(Default, Serialize, Deserialize)]
pub struct Ledger {
    pub balance: u64,
}

/// The commands: a variant's name is the command name (kebab-case), its content the payload.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Deposit(u64),
    Withdraw(u64),
    Balance,
}

/// The events: what happened, persisted (as JSON) in the entity's journal.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl EventSourcedEntity for Ledger {
    type Command = Command;
    type Event = Event;

    fn handle(&self, cmd: Command, ctx: &mut EventContext<Event>) -> Result<Reply> {
        match cmd {
            Command::Deposit(amount) => {
                if amount == 0 {
                    reject!("a deposit must be positive");
                }
                let Some(balance) = self.balance.checked_add(amount) else {
                    reject!("depositing {amount} would overflow the balance");
                };
                ctx.emit(Event::Deposited { amount });
                Ok(json!({ "balance": balance }))
            }
            Command::Withdraw(amount) => {
                if amount == 0 {
                    reject!("a withdrawal must be positive");
                }
                if amount > self.balance {
                    reject!("cannot withdraw {amount}: the balance is {}", self.balance);
                }
                ctx.emit(Event::Withdrawn { amount });
                Ok(json!({ "balance": self.balance - amount }))
            }
            Command::Balance => Ok(json!({ "balance": self.balance })),
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Deposited { amount } => self.balance = self.balance.saturating_add(amount),
            Event::Withdrawn { amount } => self.balance = self.balance.saturating_sub(amount),
        }
    }
}

cella_sdk::export_entity!(event_sourced Ledger);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::{Failure, TestKit};

    use super::Ledger;

    #[test]
    fn deposits_and_withdrawals_are_events() {
        let mut kit = TestKit::<Ledger>::new();
        assert_eq!(kit.commands(), ["deposit", "withdraw", "balance"]);
        assert_eq!(
            kit.handle("deposit", json!(10)),
            Ok(json!({ "balance": 10 }))
        );
        assert_eq!(
            kit.handle("withdraw", json!(4)),
            Ok(json!({ "balance": 6 }))
        );
        assert_eq!(
            kit.handle("balance", json!(null)),
            Ok(json!({ "balance": 6 }))
        );
        assert_eq!(
            kit.events(),
            [
                json!({ "deposited": { "amount": 10 } }),
                json!({ "withdrawn": { "amount": 4 } })
            ]
        );
    }

    #[test]
    fn overdrafts_are_rejected_and_record_nothing() {
        let mut kit = TestKit::<Ledger>::new();
        kit.handle("deposit", json!(3)).ok();
        assert_eq!(
            kit.handle("withdraw", json!(5)),
            Err(Failure::Rejected(
                "cannot withdraw 5: the balance is 3".into()
            ))
        );
        assert!(matches!(
            kit.handle("deposit", json!(0)),
            Err(Failure::Rejected(_))
        ));
        assert_eq!(kit.state().balance, 3);
        assert_eq!(kit.events().len(), 1);
    }
}
