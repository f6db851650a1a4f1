//! Example value entity: a bank account, deployed as `account` (key = account id), the
//! participant of the transfer saga (`examples/transfer/transfer`). `deposit {"amount": N}` and
//! `withdraw {"amount": N}` reply the new balance `{"balance": N}`; a withdrawal above the balance
//! is rejected (`insufficient funds: ...`), so a transfer's debit comes back to it as an error;
//! `get` replies the balance.

use cella_sdk::{Context, Deserialize, Reply, Result, Serialize, ValueEntity, json, reject};

/// The state: the balance, in the smallest unit of the currency.
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
}

/// The payload of `deposit` and `withdraw`.
#[derive(Deserialize)]
pub struct Amount {
    pub amount: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Deposit(Amount),
    Withdraw(Amount),
    Get,
}

impl ValueEntity for Account {
    type Command = Command;

    fn handle(&mut self, cmd: Command, _ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Deposit(Amount { amount }) => {
                if amount == 0 {
                    reject!("the amount must be positive");
                }
                let Some(balance) = self.balance.checked_add(amount) else {
                    reject!("depositing {amount} overflows the balance");
                };
                self.balance = balance;
            }
            Command::Withdraw(Amount { amount }) => {
                if amount == 0 {
                    reject!("the amount must be positive");
                }
                let Some(balance) = self.balance.checked_sub(amount) else {
                    reject!(
                        "insufficient funds: balance {}, requested {amount}",
                        self.balance
                    );
                };
                self.balance = balance;
            }
            Command::Get => {}
        }
        Ok(json!({ "balance": self.balance }))
    }
}

cella_sdk::export_entity!(value Account);

#[cfg(test)]
mod tests {
    use cella_sdk::json;
    use cella_sdk::testing::{Failure, TestKit};

    use super::Account;

    #[test]
    fn declares_its_commands() {
        assert_eq!(
            TestKit::<Account>::new().commands(),
            ["deposit", "withdraw", "get"]
        );
    }

    #[test]
    fn deposits_and_withdrawals_change_the_balance() {
        let mut kit = TestKit::<Account>::with_address("account", "alice");
        assert_eq!(kit.handle("get", json!(null)), Ok(json!({"balance": 0})));
        assert_eq!(
            kit.handle("deposit", json!({"amount": 100})),
            Ok(json!({"balance": 100}))
        );
        assert_eq!(
            kit.handle("withdraw", json!({"amount": 30})),
            Ok(json!({"balance": 70}))
        );
        assert_eq!(
            kit.handle("withdraw", json!({"amount": 70})),
            Ok(json!({"balance": 0}))
        );
        assert_eq!(kit.sequence(), 3);
    }

    #[test]
    fn overdrafts_and_bad_amounts_are_rejected() {
        let mut kit = TestKit::<Account>::new();
        kit.handle("deposit", json!({"amount": 10})).ok();
        assert_eq!(
            kit.handle("withdraw", json!({"amount": 11})),
            Err(Failure::Rejected(
                "insufficient funds: balance 10, requested 11".into()
            ))
        );
        assert_eq!(
            kit.handle("deposit", json!({"amount": 0})),
            Err(Failure::Rejected("the amount must be positive".into()))
        );
        assert_eq!(
            kit.handle("withdraw", json!({"amount": 0})),
            Err(Failure::Rejected("the amount must be positive".into()))
        );
        kit.handle("deposit", json!({"amount": u64::MAX - 10})).ok();
        assert_eq!(
            kit.handle("deposit", json!({"amount": 1})),
            Err(Failure::Rejected(
                "depositing 1 overflows the balance".into()
            ))
        );
        assert_eq!(kit.state().balance, u64::MAX);
        for payload in [json!(5), json!({"amount": -1}), json!({}), json!(null)] {
            assert!(
                matches!(
                    kit.handle("deposit", payload.clone()),
                    Err(Failure::BadRequest(_))
                ),
                "{payload}"
            );
        }
    }
}
