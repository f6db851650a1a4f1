//! Deployed modules: their metadata ([`ModuleInfo`]), component bytes, and the cache of
//! precompiled artifacts. These writes are rare; each runs in its own durable transaction
//! (redb serializes it with the journal writer's).
//!
//! Version numbers are chosen by the caller and checked here: a new version must be
//! [`Store::next_module_version`], one more than the last version ever assigned to the entity
//! type. Numbers are never reused, even after [`Store::delete_module`], so
//! `(entity_type, version)` names one component for the life of the store, in journal entries
//! and in the artifact cache alike.

use cella_core::{ModuleInfo, ModuleVersion, TypeLimits, decode, encode, validate_name};
use redb::{Durability, ReadableTable, WriteTransaction};

use crate::{
    Store,
    error::{Error, Result},
    tables::{ARTIFACTS, MODULE_BLOBS, MODULE_LIMITS, MODULE_SEQ, MODULES},
};

impl Store {
    /// The version number the next [`Store::put_module_version`] of `entity_type` must use:
    /// one more than the last version ever assigned to the type (1 for a new type). Numbers
    /// are never reused, even after [`Store::delete_module`].
    pub fn next_module_version(&self, entity_type: &str) -> Result<u32> {
        let txn = self.begin_read()?;
        let seq = txn
            .open_table(MODULE_SEQ)
            .map_err(Error::storage("open module_seq"))?;
        let last = seq
            .get(entity_type)
            .map_err(Error::storage("read module_seq"))?
            .map_or(0, |v| v.value());
        next_after(entity_type, last)
    }

    /// Stores a new version of `entity_type`'s module with its component bytes and makes it
    /// the active version; creates the module if it is new. `version.version` must be
    /// [`Store::next_module_version`] (checked in the same transaction, so two concurrent
    /// deploys cannot both take a number: the loser gets [`Error::VersionConflict`]).
    /// The other fields are stored as given. Returns the updated module.
    pub fn put_module_version(
        &self,
        entity_type: &str,
        version: ModuleVersion,
        component: &[u8],
    ) -> Result<ModuleInfo> {
        validate_name("entity type", entity_type)?;
        self.write(|txn| {
            let mut seq = txn
                .open_table(MODULE_SEQ)
                .map_err(Error::storage("open module_seq"))?;
            let last = seq
                .get(entity_type)
                .map_err(Error::storage("read module_seq"))?
                .map_or(0, |v| v.value());
            let next = next_after(entity_type, last)?;
            if version.version != next {
                return Err(Error::VersionConflict {
                    entity_type: entity_type.into(),
                    expected: next,
                    found: version.version,
                });
            }
            seq.insert(entity_type, next)
                .map_err(Error::storage("write module_seq"))?;

            let mut modules = txn
                .open_table(MODULES)
                .map_err(Error::storage("open modules"))?;
            let mut info = read_info(&modules, entity_type)?.unwrap_or_else(|| ModuleInfo {
                entity_type: entity_type.into(),
                active: 0,
                versions: Vec::new(),
            });
            info.versions.push(version);
            info.active = next;
            modules
                .insert(entity_type, encode(&info)?.as_slice())
                .map_err(Error::storage("write module"))?;

            let mut blobs = txn
                .open_table(MODULE_BLOBS)
                .map_err(Error::storage("open module_blobs"))?;
            blobs
                .insert((entity_type, next), component)
                .map_err(Error::storage("write module component"))?;
            Ok(info)
        })
    }

    /// Every deployed module, ordered by entity type.
    pub fn modules(&self) -> Result<Vec<ModuleInfo>> {
        let txn = self.begin_read()?;
        let modules = txn
            .open_table(MODULES)
            .map_err(Error::storage("open modules"))?;
        let mut out = Vec::new();
        for row in modules.iter().map_err(Error::storage("read modules"))? {
            let (_, value) = row.map_err(Error::storage("read modules"))?;
            out.push(decode(value.value())?);
        }
        Ok(out)
    }

    /// The module of `entity_type`, if deployed.
    pub fn module(&self, entity_type: &str) -> Result<Option<ModuleInfo>> {
        let txn = self.begin_read()?;
        let modules = txn
            .open_table(MODULES)
            .map_err(Error::storage("open modules"))?;
        read_info(&modules, entity_type)
    }

    /// The component bytes of one version of a module.
    pub fn module_bytes(&self, entity_type: &str, version: u32) -> Result<Option<Vec<u8>>> {
        self.read_versioned(MODULE_BLOBS, entity_type, version, "component")
    }

    /// Reads the `(entity_type, version)` row of a versioned blob table.
    fn read_versioned(
        &self,
        table: VersionedTable,
        entity_type: &str,
        version: u32,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read()?;
        let rows = txn.open_table(table).map_err(Error::storage(what))?;
        let value = rows
            .get((entity_type, version))
            .map_err(Error::storage(what))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Makes an existing version the active one (a rollback or roll-forward). Returns the
    /// updated module; fails with [`Error::UnknownModule`] or [`Error::UnknownVersion`].
    pub fn set_active_version(&self, entity_type: &str, version: u32) -> Result<ModuleInfo> {
        self.write(|txn| {
            let mut modules = txn
                .open_table(MODULES)
                .map_err(Error::storage("open modules"))?;
            let mut info = read_info(&modules, entity_type)?
                .ok_or_else(|| Error::UnknownModule(entity_type.into()))?;
            require_version(&info, version)?;
            info.active = version;
            modules
                .insert(entity_type, encode(&info)?.as_slice())
                .map_err(Error::storage("write module"))?;
            Ok(info)
        })
    }

    /// Removes a module: its metadata, every component blob and every cached artifact.
    /// Journals and snapshots of entities of this type stay. Returns whether the module
    /// existed.
    pub fn delete_module(&self, entity_type: &str) -> Result<bool> {
        self.write(|txn| {
            let mut modules = txn
                .open_table(MODULES)
                .map_err(Error::storage("open modules"))?;
            let existed = modules
                .remove(entity_type)
                .map_err(Error::storage("delete module"))?
                .is_some();
            let mut blobs = txn
                .open_table(MODULE_BLOBS)
                .map_err(Error::storage("open module_blobs"))?;
            blobs
                .retain_in((entity_type, 0u32)..=(entity_type, u32::MAX), |_, _| false)
                .map_err(Error::storage("delete module components"))?;
            let mut artifacts = txn
                .open_table(ARTIFACTS)
                .map_err(Error::storage("open artifacts"))?;
            artifacts
                .retain_in((entity_type, 0u32)..=(entity_type, u32::MAX), |_, _| false)
                .map_err(Error::storage("delete module artifacts"))?;
            let mut limits = txn
                .open_table(MODULE_LIMITS)
                .map_err(Error::storage("open module_limits"))?;
            limits
                .remove(entity_type)
                .map_err(Error::storage("delete module limits"))?;
            Ok(existed)
        })
    }

    /// Stores (or replaces) the scheduling limits of `entity_type` (empty limits remove the
    /// row). Kept apart from [`ModuleInfo`], so that its stored records keep their shape.
    pub fn put_module_limits(&self, entity_type: &str, limits: &TypeLimits) -> Result<()> {
        validate_name("entity type", entity_type)?;
        self.write(|txn| {
            let mut table = txn
                .open_table(MODULE_LIMITS)
                .map_err(Error::storage("open module_limits"))?;
            if limits.is_empty() {
                table
                    .remove(entity_type)
                    .map_err(Error::storage("delete module limits"))?;
            } else {
                table
                    .insert(entity_type, encode(limits)?.as_slice())
                    .map_err(Error::storage("write module limits"))?;
            }
            Ok(())
        })
    }

    /// The scheduling limits of `entity_type` (empty when none were set).
    pub fn module_limits(&self, entity_type: &str) -> Result<TypeLimits> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(MODULE_LIMITS)
            .map_err(Error::storage("open module_limits"))?;
        let value = table
            .get(entity_type)
            .map_err(Error::storage("read module limits"))?;
        Ok(value
            .map(|v| decode(v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    /// Stores (or replaces) the precompiled artifact of a module version. The version must
    /// exist ([`Error::UnknownModule`], [`Error::UnknownVersion`] otherwise), so an artifact
    /// never outlives its module.
    pub fn put_artifact(&self, entity_type: &str, version: u32, artifact: &[u8]) -> Result<()> {
        self.write(|txn| {
            let modules = txn
                .open_table(MODULES)
                .map_err(Error::storage("open modules"))?;
            let info = read_info(&modules, entity_type)?
                .ok_or_else(|| Error::UnknownModule(entity_type.into()))?;
            require_version(&info, version)?;
            let mut artifacts = txn
                .open_table(ARTIFACTS)
                .map_err(Error::storage("open artifacts"))?;
            artifacts
                .insert((entity_type, version), artifact)
                .map_err(Error::storage("write artifact"))?;
            Ok(())
        })
    }

    /// The cached artifact of a module version, if any.
    pub fn get_artifact(&self, entity_type: &str, version: u32) -> Result<Option<Vec<u8>>> {
        self.read_versioned(ARTIFACTS, entity_type, version, "artifact")
    }

    /// Drops the cached artifact of a module version (say, after a compiler upgrade made it
    /// stale). Returns whether there was one.
    pub fn delete_artifact(&self, entity_type: &str, version: u32) -> Result<bool> {
        self.write(|txn| {
            let mut artifacts = txn
                .open_table(ARTIFACTS)
                .map_err(Error::storage("open artifacts"))?;
            let removed = artifacts
                .remove((entity_type, version))
                .map_err(Error::storage("delete artifact"))?;
            Ok(removed.is_some())
        })
    }

    /// Runs `f` in a durable write transaction and commits it if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let mut txn = self
            .db()?
            .begin_write()
            .map_err(Error::storage("begin write"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(Error::storage("set durability"))?;
        let value = f(&txn)?;
        txn.commit().map_err(Error::storage("commit"))?;
        Ok(value)
    }
}

/// The version number following `last`.
fn next_after(entity_type: &str, last: u32) -> Result<u32> {
    last.checked_add(1)
        .ok_or_else(|| Error::VersionsExhausted(entity_type.into()))
}

/// Reads and decodes one module's metadata.
fn read_info(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    entity_type: &str,
) -> Result<Option<ModuleInfo>> {
    let value = table
        .get(entity_type)
        .map_err(Error::storage("read module"))?;
    Ok(value.map(|v| decode(v.value())).transpose()?)
}

/// A table of per-version blobs, keyed by `(entity_type, version)`.
type VersionedTable = redb::TableDefinition<'static, (&'static str, u32), &'static [u8]>;

/// Fails with [`Error::UnknownVersion`] unless `info` has `version`.
fn require_version(info: &ModuleInfo, version: u32) -> Result<()> {
    if info.versions.iter().any(|v| v.version == version) {
        return Ok(());
    }
    Err(Error::UnknownVersion {
        entity_type: info.entity_type.clone(),
        version,
    })
}
