//! Who may do what: the node's tokens and the check every endpoint makes before it acts.
//!
//! Tokens come from `--admin-token` (a token with id `admin` and role `admin`) and from a
//! token file (`--tokens FILE`, JSON, reloaded when its content changes; checked once a
//! second):
//!
//! ```json
//! {"tokens": [
//!   {"id": "ops", "token": "…", "role": "admin"},
//!   {"id": "ci", "token": "…", "role": "deploy", "types": ["counter", "cart"]},
//!   {"id": "web", "token": "…", "role": "invoke", "types": ["*"], "topics": ["news"]},
//!   {"id": "dash", "token": "…", "role": "invoke", "types": ["cart"], "read_only": true}
//! ]}
//! ```
//!
//! Roles: `admin` may do everything; `deploy` deploys, checks, rolls back and deletes the
//! modules of its `types`; `invoke` runs commands of its `types` and publishes to its `topics`,
//! and reads their state and journals and follows the topics — with `read_only`, only reads
//! and follows. `*` names every type (or topic). A request sends a token as
//! `Authorization: Bearer <token>`.
//!
//! What needs a token: module changes, membership and the audit trail need `admin` (or
//! `deploy` for module changes of a named type) once any token is configured; publishing to a
//! topic too (as before, where only the admin token guarded it); entity commands and reads and
//! topic streams only with `--require-invoke-token`. Listings (`GET /v1/modules`,
//! `/v1/topics`, `/v1/cluster`) and health and metrics stay open. A request without a token, or
//! with one the node does not know, gets 401; a known token without the role gets 403 naming
//! the role needed. Tokens are compared by their SHA-256 digests in constant time, and only
//! their ids are ever logged or recorded.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use hyper::{HeaderMap, header::AUTHORIZATION};
use sha2::{Digest, Sha256};

use crate::{
    error::{Error, Result},
    node::Node,
};

/// The id of the token given as `--admin-token`.
pub const ADMIN_ID: &str = "admin";

/// The caller's name where no token is needed or configured.
pub const ANONYMOUS: &str = "anonymous";

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Module changes of these types.
    Deploy { types: Vec<String> },
    /// Commands (unless `read_only`) and reads of these types and topics.
    Invoke {
        types: Vec<String>,
        topics: Vec<String>,
        read_only: bool,
    },
}

/// What a request asks to do, for [`Tokens::authorize`].
#[derive(Clone, Copy, Debug)]
pub enum Action<'a> {
    /// Membership changes and the audit trail.
    Admin,
    /// Deploy, check, roll back or delete the module of a type.
    Module(&'a str),
    /// Run a command of an entity type.
    Command(&'a str),
    /// Read an entity's state or journal.
    Read(&'a str),
    /// Publish to a topic.
    Publish(&'a str),
    /// Follow a topic (its Server-Sent Events).
    Follow(&'a str),
}

impl Action<'_> {
    /// The role the action needs, as said in a refusal.
    fn needs(&self) -> String {
        match self {
            Action::Admin => "admin".into(),
            Action::Module(ty) => format!("deploy on type `{ty}` (or admin)"),
            Action::Command(ty) => format!("invoke on type `{ty}` (or admin)"),
            Action::Read(ty) => format!("invoke or read-only invoke on type `{ty}` (or admin)"),
            Action::Publish(topic) => format!("invoke on topic `{topic}` (or admin)"),
            Action::Follow(topic) => {
                format!("invoke or read-only invoke on topic `{topic}` (or admin)")
            }
        }
    }
}

/// Who a request was authorized as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's id ([`ANONYMOUS`] where none was needed).
    pub id: String,
}

/// One known token.
#[derive(Clone)]
struct Token {
    id: String,
    digest: [u8; 32],
    role: Role,
}

fn covers(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == "*" || n == name)
}

impl Token {
    fn permits(&self, action: Action<'_>) -> bool {
        match (&self.role, action) {
            (Role::Admin, _) => true,
            (Role::Deploy { types }, Action::Module(ty)) => covers(types, ty),
            (Role::Deploy { .. }, _) => false,
            (
                Role::Invoke {
                    types, read_only, ..
                },
                Action::Command(ty),
            ) => !read_only && covers(types, ty),
            (Role::Invoke { types, .. }, Action::Read(ty)) => covers(types, ty),
            (
                Role::Invoke {
                    topics, read_only, ..
                },
                Action::Publish(topic),
            ) => !read_only && covers(topics, topic),
            (Role::Invoke { topics, .. }, Action::Follow(topic)) => covers(topics, topic),
            (Role::Invoke { .. }, Action::Admin | Action::Module(_)) => false,
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two digests in constant time (no early exit).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token file's document.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    token: String,
    role: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default, alias = "readOnly")]
    read_only: bool,
}

/// Parses a token file (see the module docs); `admin` is the `--admin-token`'s id if one is
/// set, which the file may not reuse.
fn parse(text: &str, reserved: Option<&str>) -> Result<Vec<Token>> {
    let file: File = serde_json::from_str(text)
        .map_err(|e| Error::BadRequest(format!("the token file is not valid: {e}")))?;
    let mut tokens: Vec<Token> = Vec::new();
    for entry in file.tokens {
        let id = entry.id.trim().to_string();
        if id.is_empty() || reserved == Some(id.as_str()) || tokens.iter().any(|t| t.id == id) {
            return Err(Error::BadRequest(format!(
                "the token file names token id `{id}` twice, leaves it empty, or reuses the \
                 admin token's id"
            )));
        }
        if entry.token.len() < 8 {
            return Err(Error::BadRequest(format!(
                "token `{id}` is shorter than 8 characters"
            )));
        }
        let role = match entry.role.as_str() {
            "admin" => Role::Admin,
            "deploy" => Role::Deploy { types: entry.types },
            "invoke" => Role::Invoke {
                types: entry.types,
                topics: entry.topics,
                read_only: entry.read_only,
            },
            other => {
                return Err(Error::BadRequest(format!(
                    "token `{id}` has role `{other}`; roles are admin, deploy and invoke"
                )));
            }
        };
        let digest = digest(&entry.token);
        if tokens.iter().any(|t| same(&t.digest, &digest)) {
            return Err(Error::BadRequest(format!(
                "token `{id}` has the same value as another token"
            )));
        }
        tokens.push(Token { id, digest, role });
    }
    Ok(tokens)
}

/// The node's tokens and what requires one.
pub struct Tokens {
    admin: Option<Token>,
    file: Option<PathBuf>,
    /// The file's tokens, and the digest of the content they were read from.
    loaded: RwLock<(Arc<Vec<Token>>, [u8; 32])>,
    require_invoke: bool,
}

impl Tokens {
    /// The tokens of `--admin-token` and `--tokens FILE` (read now; a bad file fails the start).
    pub fn new(
        admin_token: Option<&str>,
        file: Option<&Path>,
        require_invoke: bool,
    ) -> Result<Tokens> {
        let admin = admin_token.map(|t| Token {
            id: ADMIN_ID.into(),
            digest: digest(t),
            role: Role::Admin,
        });
        let (tokens, content) = match file {
            Some(path) => {
                let text = read(path)?;
                let reserved = admin.as_ref().map(|_| ADMIN_ID);
                (parse(&text, reserved)?, digest(&text))
            }
            None => (Vec::new(), [0; 32]),
        };
        if require_invoke && admin.is_none() && file.is_none() {
            return Err(Error::BadRequest(
                "--require-invoke-token needs tokens: give --tokens FILE or --admin-token".into(),
            ));
        }
        Ok(Tokens {
            admin,
            file: file.map(Path::to_path_buf),
            loaded: RwLock::new((Arc::new(tokens), content)),
            require_invoke,
        })
    }

    /// Whether any token is configured (admin actions then need one).
    fn guarded(&self) -> bool {
        self.admin.is_some() || self.file.is_some()
    }

    fn file_tokens(&self) -> Arc<Vec<Token>> {
        self.loaded
            .read()
            .map(|l| l.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// The token whose value is `given`, comparing against every token (constant time each).
    fn find(&self, given: &str) -> Option<Token> {
        let given = digest(given);
        let file = self.file_tokens();
        let mut found = None;
        for token in self.admin.iter().chain(file.iter()) {
            if same(&token.digest, &given) {
                found = Some(token.clone());
            }
        }
        found
    }

    /// Whether `action` needs a token on this node.
    fn needs_token(&self, action: Action<'_>) -> bool {
        match action {
            Action::Admin | Action::Module(_) | Action::Publish(_) => {
                self.guarded() || self.require_invoke
            }
            Action::Command(_) | Action::Read(_) | Action::Follow(_) => self.require_invoke,
        }
    }

    /// Checks the request's bearer token for `action`: the caller, or 401 (no token or an
    /// unknown one) or 403 (a token without the role).
    pub fn authorize(&self, headers: &HeaderMap, action: Action<'_>) -> Result<Caller> {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !self.needs_token(action) {
            // Open: name a valid token's owner all the same (for the audit trail).
            let id = given
                .and_then(|g| self.find(g))
                .map_or_else(|| ANONYMOUS.to_string(), |t| t.id);
            return Ok(Caller { id });
        }
        let needs = action.needs();
        let Some(given) = given else {
            return Err(Error::Unauthorized(format!(
                "this operation needs `Authorization: Bearer <token>` with role {needs}"
            )));
        };
        let Some(token) = self.find(given) else {
            return Err(Error::Unauthorized(format!(
                "the token is not known to this node (this operation needs role {needs})"
            )));
        };
        if token.permits(action) {
            Ok(Caller { id: token.id })
        } else {
            tracing::info!(token = %token.id, "refused: the token lacks role {needs}");
            Err(Error::Forbidden {
                role: needs.clone(),
                message: format!("token `{}` does not have role {needs}", token.id),
            })
        }
    }

    /// Reads the token file again; the ids of the new tokens when its content changed, `None`
    /// when it did not (a file that cannot be read or parsed keeps the previous tokens).
    fn reload(&self) -> Result<Option<Vec<String>>> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text = read(path)?;
        let content = digest(&text);
        let unchanged = self
            .loaded
            .read()
            .map(|l| same(&l.1, &content))
            .unwrap_or(false);
        if unchanged {
            return Ok(None);
        }
        let parsed = parse(&text, self.admin.as_ref().map(|_| ADMIN_ID));
        let tokens = match parsed {
            Ok(tokens) => tokens,
            Err(e) => {
                // Remember the content so the same mistake is reported once.
                if let Ok(mut l) = self.loaded.write() {
                    l.1 = content;
                }
                return Err(e);
            }
        };
        let ids = tokens.iter().map(|t| t.id.clone()).collect();
        if let Ok(mut l) = self.loaded.write() {
            *l = (Arc::new(tokens), content);
        }
        Ok(Some(ids))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::BadRequest(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })
}

/// How often the token file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Reloads the node's token file when its content changes, until the node is gone; each
/// reload is recorded in the audit trail.
pub(crate) fn watch(node: &Arc<Node>) {
    if node.tokens.file.is_none() {
        return;
    }
    let node: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The last failure reported, so that a missing file is not reported every second.
        let mut reported = None;
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { break };
            match node.tokens.reload() {
                Ok(None) => reported = None,
                Ok(Some(ids)) => {
                    reported = None;
                    tracing::info!(
                        "reloaded the token file: {} tokens ({})",
                        ids.len(),
                        ids.join(", ")
                    );
                    crate::audit::record_reload(&node, &ids).await;
                }
                Err(e) => {
                    let message = e.to_string();
                    if reported.as_ref() != Some(&message) {
                        tracing::warn!("keeping the previous tokens: {message}");
                        reported = Some(message);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"tokens": [
        {"id": "ops", "token": "ops-secret", "role": "admin"},
        {"id": "ci", "token": "ci-secret", "role": "deploy", "types": ["counter"]},
        {"id": "web", "token": "web-secret", "role": "invoke", "types": ["*"], "topics": ["news"]},
        {"id": "dash", "token": "dash-secret", "role": "invoke", "types": ["cart"], "read_only": true}
    ]}"#;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        h
    }

    fn tokens(require_invoke: bool) -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, FILE).unwrap();
        Tokens::new(Some("root-secret"), Some(&path), require_invoke).unwrap()
    }

    fn status(t: &Tokens, token: Option<&str>, action: Action<'_>) -> u16 {
        match t.authorize(&headers(token), action) {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn roles_allow_what_they_name() {
        let t = tokens(true);
        assert_eq!(
            t.authorize(&headers(Some("root-secret")), Action::Admin)
                .map(|c| c.id)
                .ok(),
            Some("admin".to_string())
        );
        assert_eq!(status(&t, Some("ops-secret"), Action::Admin), 200);
        assert_eq!(
            status(&t, Some("ci-secret"), Action::Module("counter")),
            200
        );
        assert_eq!(status(&t, Some("ci-secret"), Action::Module("cart")), 403);
        assert_eq!(
            status(&t, Some("ci-secret"), Action::Command("counter")),
            403
        );
        assert_eq!(status(&t, Some("web-secret"), Action::Command("x")), 200);
        assert_eq!(status(&t, Some("web-secret"), Action::Publish("news")), 200);
        assert_eq!(
            status(&t, Some("web-secret"), Action::Publish("other")),
            403
        );
        assert_eq!(status(&t, Some("web-secret"), Action::Module("x")), 403);
        assert_eq!(status(&t, Some("dash-secret"), Action::Read("cart")), 200);
        assert_eq!(
            status(&t, Some("dash-secret"), Action::Command("cart")),
            403
        );
        assert_eq!(
            status(&t, Some("dash-secret"), Action::Read("counter")),
            403
        );
        assert_eq!(status(&t, None, Action::Read("cart")), 401);
        assert_eq!(status(&t, Some("nope-nope"), Action::Read("cart")), 401);
    }

    #[test]
    fn commands_are_open_without_the_switch() {
        let t = tokens(false);
        assert_eq!(status(&t, None, Action::Command("cart")), 200);
        assert_eq!(status(&t, None, Action::Follow("news")), 200);
        assert_eq!(status(&t, None, Action::Publish("news")), 401);
        assert_eq!(status(&t, None, Action::Admin), 401);
        let open = Tokens::new(None, None, false).unwrap();
        assert_eq!(status(&open, None, Action::Admin), 200);
        assert!(Tokens::new(None, None, true).is_err());
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(
            parse(
                "{\"tokens\": [{\"id\": \"a\", \"token\": \"12345678\", \"role\": \"root\"}]}",
                None
            )
            .is_err()
        );
        assert!(
            parse(
                "{\"tokens\": [{\"id\": \"admin\", \"token\": \"12345678\", \"role\": \"admin\"}]}",
                Some(ADMIN_ID)
            )
            .is_err()
        );
        let twice = r#"{"tokens": [{"id": "a", "token": "12345678", "role": "admin"},
            {"id": "b", "token": "12345678", "role": "admin"}]}"#;
        assert!(parse(twice, None).is_err());
    }
}
