//! [`Error`], the one error type of this crate: every failure of `cella new`, `cella build` and
//! `cella dev`, with the message the user reads, the `hint:` line that says what to do about
//! it, and the underlying error kept as its [`source`](std::error::Error::source).

use std::{borrow::Cow, fmt, path::Path};

/// A line of advice printed under an error's message (`hint: …`), or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hint(Option<Cow<'static, str>>);

impl Hint {
    /// No advice.
    pub const NONE: Hint = Hint(None);

    /// The advice `text` (without the `hint: ` prefix).
    pub fn new(text: impl Into<Cow<'static, str>>) -> Hint {
        Hint(Some(text.into()))
    }

    /// The advice, if any.
    pub fn text(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl From<&'static str> for Hint {
    fn from(text: &'static str) -> Hint {
        Hint::new(text)
    }
}

impl From<String> for Hint {
    fn from(text: String) -> Hint {
        Hint::new(text)
    }
}

/// Renders as a new line `hint: …`, or as nothing.
impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => write!(f, "\nhint: {text}"),
            None => Ok(()),
        }
    }
}

/// A boxed underlying error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an operation of the developer loop failed.
///
/// `Display` is the message, then the hint on a line of its own (`hint: …`); the cause is the
/// [`source`](std::error::Error::source), not repeated in the message. [`render`] writes the
/// whole chain the way `cella` prints errors: the messages joined by `: `, then the hints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or creating a file or directory failed.
    #[error("{message}{hint}")]
    Io {
        message: String,
        hint: Hint,
        #[source]
        source: std::io::Error,
    },
    /// The directory is not a project this crate can build or serve: no or a malformed
    /// manifest, no entry module, no sources.
    #[error("{message}{hint}")]
    Project {
        message: String,
        hint: Hint,
        #[source]
        source: Option<BoxError>,
    },
    /// A name (of a new project, or an entity type) breaks the rules.
    #[error("{message}{hint}")]
    Name {
        message: String,
        hint: Hint,
        #[source]
        source: Option<cella_core::Error>,
    },
    /// A tool a build needs is missing, too old or cannot be run, or installing something
    /// with it failed (rustup, npm).
    #[error("{message}{hint}")]
    Tool {
        message: String,
        hint: Hint,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The build ran and refused the code. `status` says how the tool ended, `summary` holds
    /// its first errors (plain text).
    #[error("the build failed ({status}):\n{summary}{hint}")]
    Build {
        status: String,
        summary: String,
        hint: Hint,
    },
    /// The component is not a valid entity, or could not be checked.
    #[error("{message}{hint}")]
    Component {
        message: String,
        hint: Hint,
        #[source]
        source: cella_host::Error,
    },
    /// `cella dev`'s embedded node did not start.
    #[error("{message}{hint}")]
    Node {
        message: String,
        hint: Hint,
        #[source]
        source: cella_node::Error,
    },
    /// `cella dev` cannot watch the sources for changes.
    #[error("{message}")]
    Watch {
        message: String,
        #[source]
        source: notify::Error,
    },
}

/// What this crate's functions return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `{what}`, caused by `source`, with `hint`.
    pub(crate) fn io(what: impl fmt::Display, source: std::io::Error, hint: Hint) -> Error {
        Error::Io {
            message: what.to_string(),
            hint,
            source,
        }
    }

    /// `cannot read {path}`, with `hint`.
    pub(crate) fn read(path: &Path, source: std::io::Error, hint: Hint) -> Error {
        Error::io(format_args!("cannot read {}", path.display()), source, hint)
    }

    /// `cannot write {path}`.
    pub(crate) fn write(path: &Path, source: std::io::Error) -> Error {
        Error::io(
            format_args!("cannot write {}", path.display()),
            source,
            Hint::NONE,
        )
    }

    /// `cannot create the directory {path}`.
    pub(crate) fn create_dir(path: &Path, source: std::io::Error) -> Error {
        Error::io(
            format_args!("cannot create the directory {}", path.display()),
            source,
            Hint::NONE,
        )
    }

    /// `cannot open the directory {path}`, with `hint`.
    pub(crate) fn open_dir(path: &Path, source: std::io::Error, hint: Hint) -> Error {
        Error::io(
            format_args!("cannot open the directory {}", path.display()),
            source,
            hint,
        )
    }

    /// A project problem with no underlying error.
    pub(crate) fn project(message: impl Into<String>, hint: impl Into<Hint>) -> Error {
        Error::Project {
            message: message.into(),
            hint: hint.into(),
            source: None,
        }
    }

    /// A name that breaks the rules.
    pub(crate) fn name(message: impl Into<String>, hint: impl Into<Hint>) -> Error {
        Error::Name {
            message: message.into(),
            hint: hint.into(),
            source: None,
        }
    }

    /// A tool problem with no underlying error.
    pub(crate) fn tool(message: impl Into<String>, hint: impl Into<Hint>) -> Error {
        Error::Tool {
            message: message.into(),
            hint: hint.into(),
            source: None,
        }
    }

    /// The hint, if the error has one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Io { hint, .. }
            | Error::Project { hint, .. }
            | Error::Name { hint, .. }
            | Error::Tool { hint, .. }
            | Error::Build { hint, .. }
            | Error::Component { hint, .. }
            | Error::Node { hint, .. } => hint.text(),
            Error::Watch { .. } => None,
        }
    }
}

/// `error` and its causes as one text: their messages joined by `: `, then the `hint:` lines
/// any of them ends with, so that a hint follows the cause it is about.
pub fn render(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut hints = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let message = cause.to_string();
        let (message, hint) = match message.split_once("\nhint: ") {
            Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
            None => (message, None),
        };
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        hints.extend(hint);
        next = cause.source();
    }
    for hint in hints {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    text
}

/// How a tool's process ended, for messages: `{tool} exited with 1`, `{tool} was stopped`.
pub(crate) fn exit_status(tool: &str, status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("{tool} exited with {code}"),
        None => format!("{tool} was stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_with_their_hint() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = Error::read(Path::new("/p/Cargo.toml"), missing, "make one".into());
        assert_eq!(
            error.to_string(),
            "cannot read /p/Cargo.toml\nhint: make one"
        );
        assert_eq!(error.hint(), Some("make one"));
        assert!(std::error::Error::source(&error).is_some());
        assert_eq!(
            render(&error),
            "cannot read /p/Cargo.toml: gone\nhint: make one"
        );

        let error = Error::Build {
            status: "cargo exited with 101".into(),
            summary: "error: x".into(),
            hint: Hint::NONE,
        };
        assert_eq!(
            error.to_string(),
            "the build failed (cargo exited with 101):\nerror: x"
        );
        assert_eq!(error.hint(), None);
    }
}
