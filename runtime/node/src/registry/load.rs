//! Loading stored versions into the [`Registry`]: from the artifact file, the stored artifact
//! or the component bytes, and what a node does with a version it cannot load (started anyway,
//! the type reported by `GET /v1/modules` and its commands failing with
//! [`Error::TypeNotLoaded`], until a version that loads is made active).

use cella_host::Module;

use super::{Active, Registry};
use crate::error::{Error, Result};

impl Registry {
    /// Loads what the store says is active for `entity_type` (after a replicated change):
    /// nothing to do when that version is already active here; removed when the type is gone.
    pub async fn refresh(&self, entity_type: &str) -> Result<()> {
        // A deploy made here loads the version itself: wait for it rather than compile twice.
        let _guard = self.admin.lock().await;
        let Some(info) = self.store.module(entity_type)? else {
            if let Ok(mut map) = self.active.write() {
                map.remove(entity_type);
            }
            self.forget_failure(entity_type);
            self.loader.remove_type(entity_type);
            return Ok(());
        };
        if let Ok(mut active) = self.get(entity_type)
            && active.version == info.active
        {
            // The same version; its limits may have changed.
            let limits = self.store.module_limits(entity_type)?;
            if active.limits != limits {
                active.limits = limits;
                self.insert(entity_type, active);
            }
            return Ok(());
        }
        match self.load_version(entity_type, info.active).await {
            Ok(active) => {
                self.insert(entity_type, active);
                Ok(())
            }
            Err(e) => {
                self.fail(entity_type, info.active, &e);
                Err(e)
            }
        }
    }

    /// Loads one stored version: its artifact file or stored artifact if usable, else compiles
    /// the component (and refreshes the artifact).
    pub(super) async fn load_version(&self, entity_type: &str, version: u32) -> Result<Active> {
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
        let module = self.load_module(entity_type, version, &meta.digest).await?;
        Ok(Active {
            version,
            digest: meta.digest,
            module,
            limits: self.store.module_limits(entity_type)?,
        })
    }

    /// The module of a stored version: mapped from its artifact file, else from the stored
    /// artifact, else compiled from the component bytes (refreshing the stored artifact).
    async fn load_module(&self, entity_type: &str, version: u32, digest: &str) -> Result<Module> {
        if let Some(module) = self.loader.load_file(entity_type, digest).await {
            return Ok(module);
        }
        if let Some(artifact) = self.store.get_artifact(entity_type, version)?
            && let Ok(module) = self
                .loader
                .load_artifact(entity_type, digest, &artifact)
                .await
        {
            return Ok(module);
        }
        let bytes = self
            .store
            .module_bytes(entity_type, version)?
            .ok_or_else(|| {
                Error::Storage(format!(
                    "component bytes of {entity_type} v{version} are missing"
                ))
            })?;
        let compiled = self
            .loader
            .compile(&bytes, Some((entity_type, digest)))
            .await
            .map_err(|e| {
                Error::Internal(format!("stored component {entity_type} v{version}: {e}"))
            })?;
        if let Some(artifact) = &compiled.artifact {
            self.store.put_artifact(entity_type, version, artifact)?;
        }
        Ok(compiled.module)
    }

    /// Records that `version` of `entity_type` could not be loaded here (and drops the version
    /// that was active before, which no longer is).
    pub(super) fn fail(&self, entity_type: &str, version: u32, error: &Error) {
        tracing::error!(
            "entity type `{entity_type}` v{version} could not be loaded: {error}; its commands \
             fail until a version that loads is deployed or rolled back to"
        );
        if let Ok(mut map) = self.active.write() {
            map.remove(entity_type);
        }
        if let Ok(mut failed) = self.failed.write() {
            failed.insert(entity_type.to_string(), (version, error.to_string()));
        }
    }

    pub(super) fn forget_failure(&self, entity_type: &str) {
        if let Ok(mut failed) = self.failed.write() {
            failed.remove(entity_type);
        }
    }

    /// Why the active version of `entity_type` could not be loaded here, if it could not.
    pub fn load_error(&self, entity_type: &str) -> Option<(u32, String)> {
        self.failed.read().ok()?.get(entity_type).cloned()
    }
}
