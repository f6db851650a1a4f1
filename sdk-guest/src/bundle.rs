//! The SDKs' own files, for the tools that write them out beside a guest project (`cella new`,
//! `cella build`): the Rust SDK's sources, the Python package `cella` and the JavaScript package
//! `cella-sdk` with its pinned build toolchain. Compiled only with the `bundle` feature, so
//! guests never carry it.

/// The Rust SDK, relative to the crate root (`sdk-guest/`), without its manifest.
pub const RUST: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../src/lib.rs")),
    ("src/command.rs", include_str!("../src/command.rs")),
    ("src/context.rs", include_str!("../src/context.rs")),
    ("src/crdt.rs", include_str!("../src/crdt.rs")),
    (
        "src/crdt_handles.rs",
        include_str!("../src/crdt_handles.rs"),
    ),
    ("src/crdt_model.rs", include_str!("../src/crdt_model.rs")),
    ("src/glue.rs", include_str!("../src/glue.rs")),
    ("src/reply.rs", include_str!("../src/reply.rs")),
    ("src/testing.rs", include_str!("../src/testing.rs")),
    (
        "src/testing_crdt.rs",
        include_str!("../src/testing_crdt.rs"),
    ),
    (
        "src/testing_effects.rs",
        include_str!("../src/testing_effects.rs"),
    ),
    ("src/topic.rs", include_str!("../src/topic.rs")),
];

/// The Python SDK, relative to `sdk-guest/python/`.
pub const PYTHON: &[(&str, &str)] = &[
    (
        "cella/__init__.py",
        include_str!("../python/cella/__init__.py"),
    ),
    ("cella/_codec.py", include_str!("../python/cella/_codec.py")),
    (
        "cella/_component.py",
        include_str!("../python/cella/_component.py"),
    ),
    (
        "cella/_context.py",
        include_str!("../python/cella/_context.py"),
    ),
    ("cella/_crdt.py", include_str!("../python/cella/_crdt.py")),
    (
        "cella/_crdt_model.py",
        include_str!("../python/cella/_crdt_model.py"),
    ),
    (
        "cella/_entity.py",
        include_str!("../python/cella/_entity.py"),
    ),
    (
        "cella/_errors.py",
        include_str!("../python/cella/_errors.py"),
    ),
    ("cella/_glue.py", include_str!("../python/cella/_glue.py")),
    (
        "cella/_protocol.py",
        include_str!("../python/cella/_protocol.py"),
    ),
    ("cella/_reply.py", include_str!("../python/cella/_reply.py")),
    (
        "cella/testing.py",
        include_str!("../python/cella/testing.py"),
    ),
];

/// The JavaScript SDK and its toolchain manifests, relative to `sdk-guest/js/`.
pub const JS: &[(&str, &str)] = &[
    ("src/cella.js", include_str!("../js/src/cella.js")),
    ("src/context.js", include_str!("../js/src/context.js")),
    ("src/crdt.js", include_str!("../js/src/crdt.js")),
    ("src/crdt-model.js", include_str!("../js/src/crdt-model.js")),
    (
        "src/crdt-replica.js",
        include_str!("../js/src/crdt-replica.js"),
    ),
    ("src/glue.js", include_str!("../js/src/glue.js")),
    ("src/json.js", include_str!("../js/src/json.js")),
    ("src/schema.js", include_str!("../js/src/schema.js")),
    ("src/testing.js", include_str!("../js/src/testing.js")),
    (
        "tools/componentize.mjs",
        include_str!("../js/tools/componentize.mjs"),
    ),
    ("package.json", include_str!("../js/package.json")),
    ("package-lock.json", include_str!("../js/package-lock.json")),
];
