//! The server's error type: every failure a request can meet, with its HTTP status and the
//! stable `code` string of the JSON error body `{"error":{"code":"…","message":"…"}}`.

use hyper::StatusCode;

/// A failed request or node operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no module is deployed for entity type `{0}`")]
    UnknownType(String),
    /// The type's active version is stored but this node could not load it (bytes an older
    /// build accepted, a missing artifact): its commands fail until a version that loads is
    /// made active.
    #[error(
        "entity type `{entity_type}` v{version} is deployed but this node could not load it: \
         {reason}; deploy a new version (`cella deploy`) or roll back to one that loads \
         (`cella rollback`)"
    )]
    TypeNotLoaded {
        entity_type: String,
        version: u32,
        reason: String,
    },
    #[error("entity type `{entity_type}` has no command `{command}` (it has: {known})")]
    UnknownCommand {
        entity_type: String,
        command: String,
        known: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    #[error("the entity failed while handling the command: {0}")]
    EntityFailed(String),
    #[error("the entity did not finish within its deadline of {0} ms")]
    DeadlineExceeded(u64),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("storage failure: {0}")]
    Store(#[from] cella_store::Error),
    #[error("storage failure: {0}")]
    Journal(#[source] cella_core::Error),
    #[error("could not read the request body: {0}")]
    BodyRead(#[source] hyper::Error),
    /// A peer request this node cannot serve (an undecodable raft RPC, an unknown group).
    #[error("{0}")]
    Peer(#[source] cella_cluster::Error),
    #[error("the cluster could not confirm the change (it may or may not have been applied): {0}")]
    Cluster(#[source] cella_cluster::Error),
    #[error("the cluster could not confirm the change (it may or may not have been applied): {0}")]
    Unconfirmed(#[source] cella_core::Error),
    #[error("forwarding to {addr} failed after the request was sent: {source}")]
    Forward {
        addr: String,
        #[source]
        source: cella_cluster::network::PeerError,
    },
    /// The node cannot start; `source` is the cause (in the chain, not in this message, so that
    /// a report of the chain names it once).
    #[error("{what}")]
    Start {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Unauthorized(String),
    /// A known token without the role the request needs (`role`, e.g. `deploy on counter`).
    #[error("{message}")]
    Forbidden { role: String, message: String },
    #[error("{}", match leader {
        Some(addr) => format!("this node does not own the entity; its partition is led by {addr}"),
        None => "the entity's partition has no leader right now; retry shortly".to_string(),
    })]
    NotLeader { leader: Option<String> },
    /// An error answered by another node, relayed as is.
    #[error("{body}")]
    Remote { status: u16, body: String },
    #[error("the cluster could not confirm the change (it may or may not have been applied): {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The node cannot carry out what the command asked for (yet); nothing was persisted.
    #[error("{0}")]
    Unsupported(String),
    /// A timer firing that is no longer current (the timer was replaced, cancelled or fired).
    #[error("timer `{0}` is not due here any more (replaced, cancelled or already fired)")]
    StaleTimer(String),
    /// An entity type is over a scheduling limit (its queue is full, or its command waited
    /// past its deadline for a slot): retry after `retry_after` seconds.
    #[error(
        "entity type `{entity_type}` is over its limit {limit}={value}; retry in {retry_after} s"
    )]
    Overloaded {
        entity_type: String,
        limit: &'static str,
        value: u64,
        retry_after: u64,
    },
    /// The WebAssembly host failed (not the guest: engine, pool, serialization).
    #[error("internal error: {0}")]
    Host(#[source] cella_host::Error),
}

impl Error {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Rejected(_)
            | Error::BadRequest(_)
            | Error::InvalidComponent(_)
            | Error::BodyRead(_)
            | Error::Peer(_) => StatusCode::BAD_REQUEST,
            Error::UnknownType(_) | Error::UnknownCommand { .. } | Error::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::StaleTimer(_) => StatusCode::CONFLICT,
            Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::NotLeader { .. }
            | Error::Unavailable(_)
            | Error::Cluster(_)
            | Error::Unconfirmed(_)
            | Error::TypeNotLoaded { .. }
            | Error::Forward { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Remote { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Error::EntityFailed(_)
            | Error::Storage(_)
            | Error::Store(_)
            | Error::Journal(_)
            | Error::Start { .. }
            | Error::Host(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code (one of [`CODES`]).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Rejected(_) => "rejected",
            Error::BadRequest(_) | Error::BodyRead(_) | Error::Peer(_) => "bad_request",
            Error::UnknownType(_) => "unknown_type",
            Error::TypeNotLoaded { .. } => "type_not_loaded",
            Error::UnknownCommand { .. } => "unknown_command",
            Error::NotFound(_) => "not_found",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::StaleTimer(_) => "stale_timer",
            Error::Overloaded { .. } => "overloaded",
            Error::Unsupported(_) => "unsupported",
            Error::InvalidComponent(_) => "invalid_component",
            Error::EntityFailed(_) => "entity_failed",
            Error::DeadlineExceeded(_) => "deadline_exceeded",
            Error::Storage(_) | Error::Store(_) | Error::Journal(_) => "storage_failed",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::NotLeader { .. } => "not_leader",
            Error::Unavailable(_)
            | Error::Cluster(_)
            | Error::Unconfirmed(_)
            | Error::Forward { .. } => "unavailable",
            Error::Remote { .. } => "remote",
            Error::Start { .. } | Error::Host(_) | Error::Internal(_) => "internal",
        }
    }

    /// Seconds a client should wait before retrying (the `Retry-After` header), for `429`s:
    /// this node's, or another node's relayed.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Overloaded { retry_after, .. } => Some(*retry_after),
            Error::Remote { status: 429, .. } => {
                self.to_json()["error"]["retry_after"].as_u64().or(Some(1))
            }
            _ => None,
        }
    }

    /// The JSON error body.
    pub fn to_json(&self) -> serde_json::Value {
        if let Error::Remote { body, .. } = self
            && let Ok(value) = serde_json::from_str(body)
        {
            return value;
        }
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        // The leader's address lets a forwarding node follow the hint.
        if let Error::NotLeader {
            leader: Some(leader),
        } = self
        {
            error["leader"] = serde_json::Value::String(leader.clone());
        }
        if let Error::Overloaded {
            entity_type,
            limit,
            retry_after,
            ..
        } = self
        {
            error["type"] = serde_json::Value::String(entity_type.clone());
            error["limit"] = serde_json::Value::String((*limit).to_string());
            error["retry_after"] = serde_json::Value::from(*retry_after);
        }
        if let Error::Forbidden { role, .. } = self {
            error["role"] = serde_json::Value::String(role.clone());
        }
        serde_json::json!({ "error": error })
    }
}

impl From<cella_core::Error> for Error {
    fn from(e: cella_core::Error) -> Self {
        match e {
            cella_core::Error::InvalidName { .. } => Error::BadRequest(e.to_string()),
            unconfirmed @ cella_core::Error::Unconfirmed(_) => Error::Unconfirmed(unconfirmed),
            // Nothing was written: routing runs the command again where the entity is served.
            cella_core::Error::NotServed(_) => Error::NotLeader { leader: None },
            other => Error::Journal(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every `code` of [`Error::code`] with the status it answers (`remote` relays another node's
/// error with that node's status; 502 only when it has none). The OpenAPI document
/// (`http/openapi.json`) declares the same codes, each under this status; tests check both.
pub const CODES: &[(&str, u16)] = &[
    ("bad_request", 400),
    ("rejected", 400),
    ("invalid_component", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("unknown_type", 404),
    ("unknown_command", 404),
    ("not_found", 404),
    ("stale_timer", 409),
    ("payload_too_large", 413),
    ("overloaded", 429),
    ("entity_failed", 500),
    ("storage_failed", 500),
    ("internal", 500),
    ("unsupported", 501),
    ("not_leader", 503),
    ("type_not_loaded", 503),
    ("unavailable", 503),
    ("deadline_exceeded", 504),
    ("remote", 502),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The string literals [`Error::code`] returns, read from this file's source: every code
    /// the node can answer, whatever variants are added.
    fn codes_in_source() -> std::collections::BTreeSet<String> {
        let source = include_str!("error.rs");
        let start = source.find("pub fn code(&self)").unwrap();
        let end = start + source[start..].find("\n    }\n").unwrap();
        source[start..end]
            .lines()
            .filter_map(|line| line.split_once("=> \"")?.1.split_once('"'))
            .map(|(code, _)| code.to_string())
            .collect()
    }

    #[test]
    fn every_code_is_listed_with_its_status() {
        let listed: std::collections::BTreeSet<String> =
            CODES.iter().map(|(code, _)| code.to_string()).collect();
        assert_eq!(listed.len(), CODES.len(), "a code is listed twice");
        assert_eq!(codes_in_source(), listed, "Error::code and CODES differ");
        let status = |code: &str| CODES.iter().find(|(c, _)| *c == code).unwrap().1;
        let samples = [
            Error::Rejected("r".into()),
            Error::BadRequest("b".into()),
            Error::UnknownType("t".into()),
            Error::UnknownCommand {
                entity_type: "t".into(),
                command: "c".into(),
                known: "a".into(),
            },
            Error::NotFound("n".into()),
            Error::PayloadTooLarge {
                what: "w",
                size: 2,
                limit: 1,
            },
            Error::InvalidComponent("i".into()),
            Error::EntityFailed("e".into()),
            Error::DeadlineExceeded(1),
            Error::Storage("s".into()),
            Error::Unauthorized("u".into()),
            Error::Forbidden {
                role: "admin".into(),
                message: "f".into(),
            },
            Error::NotLeader { leader: None },
            Error::TypeNotLoaded {
                entity_type: "t".into(),
                version: 1,
                reason: "r".into(),
            },
            Error::Unavailable("u".into()),
            Error::Internal("i".into()),
            Error::Unsupported("u".into()),
            Error::StaleTimer("t".into()),
            Error::Overloaded {
                entity_type: "t".into(),
                limit: "max-concurrent",
                value: 1,
                retry_after: 1,
            },
            Error::Remote {
                status: 0,
                body: "not json".into(),
            },
        ];
        for e in &samples {
            assert_eq!(e.status().as_u16(), status(e.code()), "{e:?}");
            assert_eq!(e.to_json()["error"]["code"], e.code(), "{e:?}");
        }
    }

    #[test]
    fn an_append_refused_unwritten_is_routed_again_and_an_unconfirmed_one_is_not() {
        let refused = Error::from(cella_core::Error::NotServed("moving".into()));
        assert!(
            matches!(refused, Error::NotLeader { leader: None }),
            "{refused:?}"
        );
        let unknown = Error::from(cella_core::Error::Unconfirmed("lost".into()));
        assert!(matches!(unknown, Error::Unconfirmed(_)), "{unknown:?}");
    }
}
