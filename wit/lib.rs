//! The `cella:entity` WIT contract as text: the one copy in this directory, exposed to the tools
//! that write it out beside a guest project (`cella new`, `cella build`). Guests and the host read
//! the `.wit` files of this directory directly through their bindings generators.

/// Every file of the contract, as `(path relative to the WIT directory, contents)`.
pub const FILES: &[(&str, &str)] = &[("entity.wit", ENTITY)];

/// `entity.wit`: the `cella:entity` package and its `entity-world`.
pub const ENTITY: &str = include_str!("entity.wit");
