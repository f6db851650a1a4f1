//! The `cella:entity` WIT contract as text: the current version (`entity.wit`, 0.2.0) exposed to
//! the tools that write it out beside a guest project (`cella new`, `cella build`). Shipped
//! versions are frozen in directories of their own (`0.1.0/entity.wit`), which the host keeps
//! serving. Guests and the host read the `.wit` files directly through their bindings generators.

/// Every file of the contract, as `(path relative to the WIT directory, contents)`.
pub const FILES: &[(&str, &str)] = &[("entity.wit", ENTITY)];

/// `entity.wit`: the `cella:entity` package, its `entity-world` and the optional `fold` export.
pub const ENTITY: &str = include_str!("entity.wit");

/// The version of the current contract.
pub const VERSION: &str = "0.2.0";
