//! The store's error type and its conversion into [`cella_core::Error`].

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database (or the file system under it) failed; the operation was not made durable.
    #[error("storage error: {context}{}", cause(source))]
    Storage {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The file is a database, but not one in the store format this build reads.
    #[error(
        "store format mismatch: the database has {}, this build reads format version {expected}",
        describe_format(*found)
    )]
    FormatMismatch {
        /// The version recorded in the `meta` table (`None`: none recorded).
        found: Option<u32>,
        expected: u32,
    },
    /// The store was closed; its writer no longer accepts appends.
    #[error("the store is closed")]
    Closed,
    /// A journal commit failed earlier; the store accepts no appends until it is reopened.
    #[error("journal writes are stopped after a failed commit ({0}); restart the node to recover")]
    Stopped(String),
    /// No module of this entity type is deployed.
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    /// The module exists but has no such version.
    #[error("module {entity_type:?} has no version {version}")]
    UnknownVersion { entity_type: String, version: u32 },
    /// A new module version did not carry the next version number.
    #[error("module {entity_type:?}: the next version is {expected}, not {found}")]
    VersionConflict {
        entity_type: String,
        expected: u32,
        found: u32,
    },
    /// The module already has the largest possible version number.
    #[error("module {0:?} has run out of version numbers")]
    VersionsExhausted(String),
    /// A log write was handed to [`crate::Store::write_group_deferred`]: only a state
    /// machine's writes, which its log can recompute, may be deferred.
    #[error("{0} cannot be deferred: only state-machine writes can")]
    NotDeferrable(&'static str),
    /// Encoding, decoding or validation from the core data model failed.
    #[error(transparent)]
    Core(#[from] cella_core::Error),
}

/// Any error, boxed, as the source of [`Error::Storage`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn cause(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|source| format!(": {source}"))
        .unwrap_or_default()
}

fn describe_format(found: Option<u32>) -> String {
    match found {
        Some(v) => format!("format version {v}"),
        None => "no format version (not a Cella store)".into(),
    }
}

impl Error {
    /// A closure wrapping an error as [`Error::Storage`] with `context` in front, keeping it
    /// as the source.
    pub(crate) fn storage<E>(context: &'static str) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| Error::Storage {
            context: context.to_string(),
            source: Some(Box::new(e)),
        }
    }

    /// [`Error::Storage`] for what the store found wrong itself (no underlying error).
    pub(crate) fn corrupt(context: String) -> Error {
        Error::Storage {
            context,
            source: None,
        }
    }
}

impl From<Error> for cella_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(core) => core,
            other => cella_core::Error::Storage(Box::new(other)),
        }
    }
}

/// Results of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
