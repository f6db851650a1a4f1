//! The module registry: which component version serves each entity type. Deploys validate and
//! compile a component, persist it (with its precompiled artifact) and swap it in atomically;
//! on start the registry reloads every active version, from the artifact when it still fits the
//! engine and from the component bytes otherwise.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use cella_core::{EntityKind, ModuleInfo, ModuleVersion, validate_name};
use cella_host::{Host, Module};
use cella_store::Store;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A loaded, active module version.
#[derive(Clone)]
pub struct Active {
    pub version: u32,
    pub digest: String,
    pub module: Module,
}

impl Active {
    pub fn kind(&self) -> EntityKind {
        self.module.descriptor().kind
    }

    /// Whether the module declares `command`.
    pub fn has_command(&self, command: &str) -> bool {
        self.module
            .descriptor()
            .commands
            .iter()
            .any(|c| c == command)
    }

    pub fn command_list(&self) -> String {
        self.module.descriptor().commands.join(", ")
    }
}

/// Maps entity types to their active module.
pub struct Registry {
    host: Host,
    store: Store,
    active: RwLock<HashMap<String, Active>>,
    /// Serializes deploys, deletes and rollbacks.
    admin: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Registry {
    /// Loads every deployed module from the store.
    pub async fn open(host: Host, store: Store) -> Result<Arc<Registry>> {
        let registry = Arc::new(Registry {
            host,
            store,
            active: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
        });
        for info in registry.store.modules()? {
            let active = registry
                .load_version(&info.entity_type, info.active)
                .await?;
            registry.insert(&info.entity_type, active);
        }
        Ok(registry)
    }

    fn insert(&self, entity_type: &str, active: Active) {
        if let Ok(mut map) = self.active.write() {
            map.insert(entity_type.to_string(), active);
        }
    }

    /// Loads one stored version: its artifact if usable, else compiles the component (and
    /// refreshes the artifact).
    async fn load_version(&self, entity_type: &str, version: u32) -> Result<Active> {
        let info = self
            .store
            .module(entity_type)?
            .ok_or_else(|| Error::UnknownType(entity_type.to_string()))?;
        let meta = info
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::NotFound(format!("{entity_type} has no version {version}")))?
            .clone();
        if let Some(artifact) = self.store.get_artifact(entity_type, version)?
            && let Ok(module) = self.host.load_precompiled(&artifact).await
        {
            return Ok(Active {
                version,
                digest: meta.digest,
                module,
            });
        }
        let bytes = self
            .store
            .module_bytes(entity_type, version)?
            .ok_or_else(|| {
                Error::Storage(format!(
                    "component bytes of {entity_type} v{version} are missing"
                ))
            })?;
        let module = self.host.load(&bytes).await.map_err(|e| {
            Error::Internal(format!("stored component {entity_type} v{version}: {e}"))
        })?;
        if let Ok(artifact) = module.serialize() {
            self.store.put_artifact(entity_type, version, &artifact)?;
        }
        Ok(Active {
            version,
            digest: meta.digest,
            module,
        })
    }

    /// The active module of `entity_type`.
    pub fn get(&self, entity_type: &str) -> Result<Active> {
        self.active
            .read()
            .ok()
            .and_then(|m| m.get(entity_type).cloned())
            .ok_or_else(|| Error::UnknownType(entity_type.to_string()))
    }

    /// Number of deployed types.
    pub fn len(&self) -> usize {
        self.active.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates, compiles, persists and activates a new version of `entity_type`.
    pub async fn deploy(&self, entity_type: &str, wasm: &[u8]) -> Result<(ModuleVersion, bool)> {
        validate_name("entity type", entity_type).map_err(|e| Error::BadRequest(e.to_string()))?;
        let _guard = self.admin.lock().await;
        let digest = digest_of(wasm);
        // Re-deploying the active bytes is a no-op that returns the existing version.
        if let Some(info) = self.store.module(entity_type)?
            && let Some(v) = info.active_version().filter(|v| v.digest == digest)
        {
            return Ok((v.clone(), false));
        }
        let module = self.host.load(wasm).await.map_err(|e| match e {
            cella_host::Error::InvalidComponent(m) => Error::InvalidComponent(m),
            other => Error::InvalidComponent(other.to_string()),
        })?;
        let descriptor = module.descriptor();
        let meta = ModuleVersion {
            version: self.store.next_module_version(entity_type)?,
            digest: digest.clone(),
            size: wasm.len() as u64,
            created_ms: now_ms(),
            kind: descriptor.kind,
            commands: descriptor.commands.clone(),
        };
        let info = self.store.put_module_version(entity_type, meta, wasm)?;
        let meta = info
            .active_version()
            .cloned()
            .ok_or_else(|| Error::Internal("the stored module has no active version".into()))?;
        if let Ok(artifact) = module.serialize() {
            self.store
                .put_artifact(entity_type, meta.version, &artifact)?;
        }
        self.insert(
            entity_type,
            Active {
                version: meta.version,
                digest,
                module,
            },
        );
        Ok((meta, true))
    }

    /// All deployed types.
    pub fn list(&self) -> Result<Vec<ModuleInfo>> {
        Ok(self.store.modules()?)
    }

    /// One deployed type.
    pub fn info(&self, entity_type: &str) -> Result<ModuleInfo> {
        self.store
            .module(entity_type)?
            .ok_or_else(|| Error::UnknownType(entity_type.to_string()))
    }

    /// Removes a type and all its versions. Entity state of that type stays on disk, so a
    /// later deploy of the same type finds it again.
    pub async fn delete(&self, entity_type: &str) -> Result<()> {
        let _guard = self.admin.lock().await;
        if !self.store.delete_module(entity_type)? {
            return Err(Error::UnknownType(entity_type.to_string()));
        }
        if let Ok(mut map) = self.active.write() {
            map.remove(entity_type);
        }
        Ok(())
    }
}
