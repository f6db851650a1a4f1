//! Generated bindings for both contracts the host serves — `cella:entity@0.1.0` (frozen, in
//! `wit/0.1.0/`) and `cella:entity@0.2.0` (`wit/`), world `entity-world` in each, plus 0.2.0's
//! optional `fold` export (world `fold-world`, bound apart) — and the [`Contract`] a component
//! implements, picked once when it is loaded by the export it has, with the per-contract
//! instance-pre, instance and guest handles the call paths match on.

use wasmtime::{
    Engine, Store,
    component::{Component, Linker},
};

use crate::sandbox::StoreState;

/// `cella:entity@0.1.0`. The parse of `wit/` reads only the `.wit` files of that directory (and
/// a `deps/` folder), so the frozen copy in `wit/0.1.0/` is a package of its own.
pub(crate) mod v01 {
    wasmtime::component::bindgen!({
        world: "entity-world",
        path: "../../wit/0.1.0",
        imports: { default: async },
        exports: { default: async },
    });
}

/// `cella:entity@0.2.0`, the current contract.
pub(crate) mod v02 {
    wasmtime::component::bindgen!({
        world: "entity-world",
        path: "../../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The optional `cella:entity/fold@0.2.0` export (world `fold-world`), bound apart so that a
/// component without it still loads.
pub(crate) mod fold {
    wasmtime::component::bindgen!({
        world: "fold-world",
        path: "../../wit",
        exports: { default: async },
    });
}

/// The name of the optional fold export.
const FOLD_EXPORT: &str = "cella:entity/fold@0.2.0";

/// Which version of `cella:entity` a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contract {
    V0_1,
    V0_2,
}

impl Contract {
    /// Newest first: a component exporting both is served as the newest.
    pub(crate) const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The version, e.g. `"0.2.0"`.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The interface an entity component of this contract exports.
    pub(crate) fn export(self) -> &'static str {
        match self {
            Contract::V0_1 => "cella:entity/entity@0.1.0",
            Contract::V0_2 => "cella:entity/entity@0.2.0",
        }
    }

    /// The contract whose entity interface `component` exports, if any.
    pub(crate) fn of(engine: &Engine, component: &Component) -> Option<Contract> {
        let ty = component.component_type();
        Contract::ALL
            .into_iter()
            .find(|c| ty.get_export(engine, c.export()).is_some())
    }
}

/// Adds what both worlds import (the types interfaces) to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v01::EntityWorld::add_to_linker::<_, HasSelf<StoreState>>(linker, |s| s)?;
    v02::EntityWorld::add_to_linker::<_, HasSelf<StoreState>>(linker, |s| s)
}

/// A component prepared for instantiation against its contract.
pub(crate) enum Pre {
    V0_1(v01::EntityWorldPre<StoreState>),
    V0_2 {
        pre: wasmtime::component::InstancePre<StoreState>,
        entity: v02::EntityWorldIndices,
        /// Present when the component exports `fold`.
        fold: Option<fold::FoldWorldIndices>,
    },
}

impl Pre {
    /// Checks that `pre` has the complete entity export of `contract` (and, when it exports
    /// `fold`, that it has the right type).
    pub(crate) fn new(
        contract: Contract,
        pre: wasmtime::component::InstancePre<StoreState>,
    ) -> wasmtime::Result<Pre> {
        Ok(match contract {
            Contract::V0_1 => Pre::V0_1(v01::EntityWorldPre::new(pre)?),
            Contract::V0_2 => {
                let entity = v02::EntityWorldIndices::new(&pre)?;
                let exported = pre
                    .component()
                    .component_type()
                    .get_export(pre.component().engine(), FOLD_EXPORT)
                    .is_some();
                let fold = match exported {
                    true => Some(fold::FoldWorldIndices::new(&pre)?),
                    false => None,
                };
                Pre::V0_2 { pre, entity, fold }
            }
        })
    }

    pub(crate) fn contract(&self) -> Contract {
        match self {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2 { .. } => Contract::V0_2,
        }
    }

    /// A new instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<World> {
        Ok(match self {
            Pre::V0_1(pre) => World::V0_1(pre.instantiate_async(store).await?),
            Pre::V0_2 { pre, entity, fold } => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let world = entity.load(&mut *store, &instance)?;
                let fold = match fold {
                    Some(fold) => Some(fold.load(&mut *store, &instance)?),
                    None => None,
                };
                World::V0_2(world, fold)
            }
        })
    }
}

/// An instantiated entity component.
pub(crate) enum World {
    V0_1(v01::EntityWorld),
    V0_2(v02::EntityWorld, Option<fold::FoldWorld>),
}

impl World {
    /// The handle to call the entity interface with (cheap to clone, detached from `self`).
    pub(crate) fn guest(&self) -> Guest {
        match self {
            World::V0_1(w) => Guest::V0_1(w.cella_entity_entity().clone()),
            World::V0_2(w, _) => Guest::V0_2(w.cella_entity_entity().clone()),
        }
    }

    /// The handle to call the optional fold interface with, when the component exports it.
    pub(crate) fn fold(&self) -> Option<fold::exports::cella::entity::fold::Guest> {
        match self {
            World::V0_2(_, Some(fold)) => Some(fold.cella_entity_fold().clone()),
            _ => None,
        }
    }
}

/// The entity interface of an instance.
pub(crate) enum Guest {
    V0_1(v01::exports::cella::entity::entity::Guest),
    V0_2(v02::exports::cella::entity::entity::Guest),
}
