//! Example value entity: a money transfer between two accounts as a *saga*, deployed as
//! `transfer` (key = the transfer's id) beside `account` (`examples/transfer/account`).
//!
//! `start {"from", "to", "amount", "timeoutMs"?}` debits `account/<from>` (a call whose outcome
//! comes back as `debited`); once debited it credits `account/<to>` (outcome: `credited`) and sets
//! the timer `timeout` (`timeoutMs`, 5 s by default). A credit that is rejected, or that does not
//! answer before the timer fires, is compensated: the amount is deposited back to `from`
//! (outcome: `refunded`). `get` replies the transfer.
//!
//! ```text
//! new ─start─► debiting ─debited ok─► crediting ─credited ok─► completed
//!                 │                      │ credited error, or timeout
//!                 └─debited error─► failed  └─► refunding ─refunded ok─► refunded
//!                                                  └─refunded error─► refund-failed
//! ```
//!
//! Every step acts only in the status it expects, so late or repeated answers do nothing: after
//! a timeout, a credit that finally fails is ignored (the refund is already under way: no double
//! refund), and the timer firing after the credit answered is ignored. A credit that finally
//! *succeeds* after the refund started would leave the money with both accounts, so it is
//! reversed: the amount is withdrawn from `to` again (outcome: `reversed`), recorded in
//! `lateCredit`. The reply-route commands accept only answers to this transfer's calls (the
//! correlation is the transfer's id) and `timeout` only from its timer; anything else is a
//! `bad-request`.

use cella_sdk::{
    CallReply, Context, Deserialize, Rejection, Reply, Result, Serialize, Value, ValueEntity, json,
    reject,
};

/// The account entity type.
pub const ACCOUNT: &str = "account";
/// The timer that bounds the credit.
pub const TIMEOUT_TIMER: &str = "timeout";
/// How long the credit may take by default, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// Where a transfer is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not started.
    #[default]
    New,
    /// Waiting for the debit of `from`.
    Debiting,
    /// `from` was debited; waiting for the credit of `to` (the timeout timer runs).
    Crediting,
    /// `to` was credited: done.
    Completed,
    /// The debit of `from` failed: nothing moved.
    Failed,
    /// The credit failed or timed out; waiting for the refund of `from`.
    Refunding,
    /// `from` got the amount back.
    Refunded,
    /// The refund itself failed: the amount is with nobody; needs a person.
    RefundFailed,
}

impl Status {
    /// The status as it is serialized.
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Debiting => "debiting",
            Status::Crediting => "crediting",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Refunding => "refunding",
            Status::Refunded => "refunded",
            Status::RefundFailed => "refund-failed",
        }
    }
}

/// What became of a credit that succeeded after the refund had started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateCredit {
    /// Withdrawing it from `to` again.
    Reversing,
    /// Withdrawn from `to` again.
    Reversed,
    /// Could not be withdrawn (the message says why): needs a person.
    Unreversed(String),
}

/// The state, and the reply of every command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub status: Status,
    pub from: String,
    pub to: String,
    pub amount: u64,
    pub timeout_ms: u64,
    /// Why the transfer failed or was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_credit: Option<LateCredit>,
}

/// The payload of `start`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Start {
    pub from: String,
    pub to: String,
    pub amount: u64,
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Start(Start),
    Get,
    /// The outcome of the debit of `from`.
    Debited(CallReply<Value>),
    /// The outcome of the credit of `to`.
    Credited(CallReply<Value>),
    /// Fired by the timer `timeout`.
    Timeout,
    /// The outcome of the refund to `from`.
    Refunded(CallReply<Value>),
    /// The outcome of withdrawing a late credit from `to`.
    Reversed(CallReply<Value>),
}

impl ValueEntity for Transfer {
    type Command = Command;

    fn handle(&mut self, cmd: Command, ctx: &mut Context) -> Result<Reply> {
        match cmd {
            Command::Start(start) => self.start(start, ctx)?,
            Command::Get => {}
            Command::Debited(outcome) => {
                answer_to_me(ctx)?;
                if self.status == Status::Debiting {
                    match outcome {
                        CallReply::Ok(_) => {
                            let (to, id) = (self.to.clone(), ctx.key().to_owned());
                            let amount = json!({ "amount": self.amount });
                            ctx.call_with_reply(ACCOUNT, to, "deposit", &amount, "credited", id);
                            ctx.schedule(TIMEOUT_TIMER, self.timeout_ms, "timeout", &());
                            self.status = Status::Crediting;
                        }
                        CallReply::Error(e) => {
                            self.status = Status::Failed;
                            self.reason = Some(format!("debit failed: {}", e.message));
                        }
                    }
                }
            }
            Command::Credited(outcome) => {
                answer_to_me(ctx)?;
                match (self.status, outcome) {
                    (Status::Crediting, CallReply::Ok(_)) => {
                        ctx.cancel(TIMEOUT_TIMER);
                        self.status = Status::Completed;
                    }
                    (Status::Crediting, CallReply::Error(e)) => {
                        ctx.cancel(TIMEOUT_TIMER);
                        self.refund(format!("credit failed: {}", e.message), ctx);
                    }
                    // The credit went through after the refund started: take it back.
                    (
                        Status::Refunding | Status::Refunded | Status::RefundFailed,
                        CallReply::Ok(_),
                    ) if self.late_credit.is_none() => {
                        let (to, id) = (self.to.clone(), ctx.key().to_owned());
                        let amount = json!({ "amount": self.amount });
                        ctx.call_with_reply(ACCOUNT, to, "withdraw", &amount, "reversed", id);
                        self.late_credit = Some(LateCredit::Reversing);
                    }
                    // A late failure: the refund is already under way.
                    _ => {}
                }
            }
            Command::Timeout => {
                if ctx.timer() != Some(TIMEOUT_TIMER) {
                    return Err(Rejection::bad_request(
                        "`timeout` is fired by the transfer's timer, not sent",
                    ));
                }
                if self.status == Status::Crediting {
                    let reason = format!("credit timed out after {} ms", self.timeout_ms);
                    self.refund(reason, ctx);
                }
            }
            Command::Refunded(outcome) => {
                answer_to_me(ctx)?;
                if self.status == Status::Refunding {
                    self.status = match outcome {
                        CallReply::Ok(_) => Status::Refunded,
                        CallReply::Error(e) => {
                            let reason = self.reason.take().unwrap_or_default();
                            self.reason = Some(format!("{reason}; refund failed: {}", e.message));
                            Status::RefundFailed
                        }
                    };
                }
            }
            Command::Reversed(outcome) => {
                answer_to_me(ctx)?;
                if self.late_credit == Some(LateCredit::Reversing) {
                    self.late_credit = Some(match outcome {
                        CallReply::Ok(_) => LateCredit::Reversed,
                        CallReply::Error(e) => LateCredit::Unreversed(e.message),
                    });
                }
            }
        }
        Ok(json!(self))
    }
}

impl Transfer {
    /// `start`: debit `from`.
    fn start(&mut self, start: Start, ctx: &mut Context) -> Result<()> {
        if self.status != Status::New {
            reject!("transfer {} is already {}", ctx.key(), self.status.name());
        }
        if start.amount == 0 {
            reject!("the amount must be positive");
        }
        if start.from == start.to {
            reject!("cannot transfer from account {} to itself", start.from);
        }
        *self = Transfer {
            status: Status::Debiting,
            from: start.from,
            to: start.to,
            amount: start.amount,
            timeout_ms: start.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            reason: None,
            late_credit: None,
        };
        let (from, id) = (self.from.clone(), ctx.key().to_owned());
        let amount = json!({ "amount": self.amount });
        ctx.call_with_reply(ACCOUNT, from, "withdraw", &amount, "debited", id);
        Ok(())
    }

    /// The compensation: deposit the amount back to `from`.
    fn refund(&mut self, reason: String, ctx: &mut Context) {
        let (from, id) = (self.from.clone(), ctx.key().to_owned());
        let amount = json!({ "amount": self.amount });
        ctx.call_with_reply(ACCOUNT, from, "deposit", &amount, "refunded", id);
        self.status = Status::Refunding;
        self.reason = Some(reason);
    }
}

/// A reply-route command must answer one of this transfer's calls (correlation = its key).
fn answer_to_me(ctx: &Context) -> Result<()> {
    if ctx.correlation() == Some(ctx.key()) {
        Ok(())
    } else {
        Err(Rejection::bad_request(format!(
            "`{}` is the answer to a call of this transfer, not a command to send",
            ctx.command()
        )))
    }
}

cella_sdk::export_entity!(value Transfer);

#[cfg(test)]
mod tests;
