//! Generated bindings for the `cella:entity@0.1.0` contract (world `entity-world`).

wasmtime::component::bindgen!({
    world: "entity-world",
    path: "../../wit",
    imports: { default: async },
    exports: { default: async },
});
