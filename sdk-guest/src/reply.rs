//! The outcome of a call, as its reply route receives it: [`CallReply`] (`{"ok": <reply>}` or
//! `{"error": {"code", "message"}}`) and [`CallError`]. A command variant takes a `CallReply<T>`
//! as its payload to handle the answer of [`Context::call_with_reply`](crate::Context).

use serde::{Deserialize, Serialize};

/// What came of a call made with [`Context::call_with_reply`](crate::Context::call_with_reply),
/// the payload of its reply-route command: the target's reply (`{"ok": T}`), or why the call did
/// not succeed (`{"error": {"code": C, "message": M}}`). The context's
/// [`correlation`](crate::Context::correlation) says which call it answers.
///
/// ```
/// use cella_sdk::{CallError, CallReply};
///
/// let ok: CallReply<u64> = serde_json::from_str(r#"{"ok": 7}"#).unwrap();
/// assert_eq!(ok, CallReply::Ok(7));
/// let error: CallReply<u64> =
///     serde_json::from_str(r#"{"error": {"code": "rejected", "message": "no funds"}}"#).unwrap();
/// assert!(matches!(error, CallReply::Error(CallError { ref code, .. }) if code == "rejected"));
/// assert!(error.into_result().is_err());
/// ```
///
/// `T` is the target command's reply type (`cella_sdk::Value` for any JSON). A reply that does
/// not deserialize as `T` fails the reply command as a `bad-request`, so prefer a `T` that
/// accepts every reply the target can give.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallReply<T> {
    /// The target's reply.
    Ok(T),
    /// The call did not succeed: rejected, a bad request, an unknown command or entity type, or
    /// a failure of the target.
    Error(CallError),
}

impl<T> CallReply<T> {
    /// The reply, or the error.
    pub fn into_result(self) -> core::result::Result<T, CallError> {
        match self {
            CallReply::Ok(reply) => Ok(reply),
            CallReply::Error(error) => Err(error),
        }
    }

    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, CallReply::Ok(_))
    }
}

/// Why a call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// One of [`CallError::REJECTED`], [`CallError::BAD_REQUEST`],
    /// [`CallError::UNKNOWN_COMMAND`], [`CallError::UNKNOWN_TYPE`], [`CallError::FAILED`].
    pub code: String,
    /// What went wrong: for a rejection, the target's rejection message.
    pub message: String,
}

impl CallError {
    /// A business rule of the target said no.
    pub const REJECTED: &'static str = "rejected";
    /// The payload was not what the target's command expects.
    pub const BAD_REQUEST: &'static str = "bad_request";
    /// The target has no command of that name.
    pub const UNKNOWN_COMMAND: &'static str = "unknown_command";
    /// No module is deployed for the target's type.
    pub const UNKNOWN_TYPE: &'static str = "unknown_type";
    /// The target failed (its code trapped, or the host could not run it).
    pub const FAILED: &'static str = "failed";

    /// An error with the given code and message (for tests and replies of your own).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Whether the target rejected the command (a business rule, not a fault).
    pub fn is_rejected(&self) -> bool {
        self.code == Self::REJECTED
    }
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn reads_and_writes_the_wire_form() {
        let ok: CallReply<Value> = serde_json::from_value(json!({"ok": {"value": "x"}})).unwrap();
        assert_eq!(ok, CallReply::Ok(json!({"value": "x"})));
        assert!(ok.is_ok());
        let error: CallReply<Value> = serde_json::from_value(
            json!({"error": {"code": "unknown_command", "message": "nope"}}),
        )
        .unwrap();
        assert_eq!(
            error,
            CallReply::Error(CallError::new(CallError::UNKNOWN_COMMAND, "nope"))
        );
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"error": {"code": "unknown_command", "message": "nope"}})
        );
        assert_eq!(
            serde_json::to_value(CallReply::Ok(3)).unwrap(),
            json!({"ok": 3})
        );
        let Err(e) = error.into_result() else {
            panic!("an error")
        };
        assert_eq!(e.to_string(), "unknown_command: nope");
        assert!(!e.is_rejected());
        assert!(CallError::new("rejected", "no").is_rejected());
    }

    #[test]
    fn anything_else_does_not_decode() {
        for bad in [
            json!(null),
            json!({"ok": 1, "error": {"code": "c", "message": "m"}}),
            json!({"error": "x"}),
            json!({"fine": 1}),
        ] {
            assert!(
                serde_json::from_value::<CallReply<Value>>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(serde_json::from_value::<CallReply<u64>>(json!({"ok": "x"})).is_err());
    }
}
