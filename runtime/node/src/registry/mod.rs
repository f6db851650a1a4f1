//! The module registry: which component version serves each entity type. Deploys validate and
//! compile a component (through the [`Loader`]: in a compiler process when the node has one),
//! persist it (with its precompiled artifact, in the store and as a mapped file) and swap it in
//! atomically; on start the registry reloads every active version, from the artifact file, else
//! the stored artifact, when it still fits the engine, and from the component bytes otherwise.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use cella_core::{EntityKind, ModuleInfo, ModuleVersion, TypeLimits, validate_name};
use cella_host::Module;
use cella_store::Store;
use sha2::{Digest, Sha256};

use crate::{
    compiler::{Compiled, Loader},
    error::{Error, Result},
    replay,
};

/// A loaded, active module version.
#[derive(Clone)]
pub struct Active {
    pub version: u32,
    pub digest: String,
    pub module: Module,
    /// The type's scheduling limits (set at deploy).
    pub limits: TypeLimits,
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

/// How many existing entities a deploy, rollback or check replays through a new version.
pub const REPLAY_CHECK_LIMIT: usize = 1000;

/// The result of a deploy.
#[derive(Clone, Debug)]
pub struct Deployed {
    /// The active version after the deploy.
    pub version: ModuleVersion,
    /// False when the bytes were already the active version (nothing changed).
    pub created: bool,
    /// Event-sourced entities whose journals were replayed through the new version.
    pub replayed: usize,
    /// What the capability check said about the component (inert interfaces it imports).
    pub warnings: Vec<String>,
}

/// Maps entity types to their active module.
pub struct Registry {
    loader: Loader,
    store: Store,
    active: RwLock<HashMap<String, Active>>,
    /// Types whose active version this node could not load: the version and why. Their
    /// commands fail with [`Error::TypeNotLoaded`] until a version that loads is made active.
    failed: RwLock<HashMap<String, (u32, String)>>,
    /// Serializes deploys, deletes and rollbacks.
    admin: tokio::sync::Mutex<()>,
    /// In a cluster, module changes are made by the metadata group's leader and replicated
    /// through it to every node's store.
    cluster: Option<Arc<cella_cluster::Cluster>>,
}

mod load;

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Registry {
    /// Loads every deployed module from the store.
    pub async fn open(
        loader: Loader,
        store: Store,
        cluster: Option<Arc<cella_cluster::Cluster>>,
    ) -> Result<Arc<Registry>> {
        let registry = Arc::new(Registry {
            loader,
            store,
            active: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            cluster,
        });
        for info in registry.store.modules()? {
            // One type that does not load (bytes an older build accepted) must not keep the
            // node, and every other type, from starting: it is reported and its commands fail.
            match registry.load_version(&info.entity_type, info.active).await {
                Ok(active) => registry.insert(&info.entity_type, active),
                Err(e) => registry.fail(&info.entity_type, info.active, &e),
            }
        }
        Ok(registry)
    }

    fn insert(&self, entity_type: &str, active: Active) {
        if let Ok(mut map) = self.active.write() {
            map.insert(entity_type.to_string(), active);
        }
        self.forget_failure(entity_type);
    }

    /// In a cluster: fails with [`Error::NotLeader`] (naming the leader) unless this node leads
    /// the metadata group, which makes every module change.
    fn check_module_leader(&self) -> Result<()> {
        match &self.cluster {
            Some(cluster) => cluster
                .meta_leadership()
                .map_err(|leader| Error::NotLeader { leader }),
            None => Ok(()),
        }
    }

    /// Replicates a module change with its audit record (cluster; `true`), or records the
    /// audit entry here and leaves the change to the caller (no cluster; `false`).
    async fn replicate(
        &self,
        op: cella_cluster::ModuleOp,
        record: cella_cluster::AuditRecord,
    ) -> Result<bool> {
        crate::audit::commit(self.cluster.as_deref(), &self.store, record, Some(op)).await
    }

    /// The active module of `entity_type`, loading it first when the store has it but this
    /// node has not loaded it yet (a version replicated from another node, still compiling).
    pub async fn get_loaded(&self, entity_type: &str) -> Result<Active> {
        match self.get(entity_type) {
            Err(Error::UnknownType(_)) if self.cluster.is_some() => {
                self.refresh(entity_type).await?;
                self.get(entity_type)
            }
            other => other,
        }
    }

    /// The active module of `entity_type`.
    pub fn get(&self, entity_type: &str) -> Result<Active> {
        self.active
            .read()
            .ok()
            .and_then(|m| m.get(entity_type).cloned())
            .ok_or_else(|| match self.load_error(entity_type) {
                Some((version, reason)) => Error::TypeNotLoaded {
                    entity_type: entity_type.to_string(),
                    version,
                    reason,
                },
                None => Error::UnknownType(entity_type.to_string()),
            })
    }

    /// The crdt type and durability of `entity_type`'s active module, read in place (the
    /// command path asks this of every command; `None`: not loaded here).
    pub fn storage(
        &self,
        entity_type: &str,
    ) -> Option<(Option<cella_host::CrdtType>, cella_host::Durability)> {
        let active = self.active.read().ok()?;
        let descriptor = active.get(entity_type)?.module.descriptor();
        Some((descriptor.crdt, descriptor.durability))
    }

    /// Number of deployed types.
    pub fn len(&self) -> usize {
        self.active.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates, compiles, persists and activates a new version of `entity_type`, recorded in
    /// the audit trail as done by `actor` (a token id).
    pub async fn deploy(&self, entity_type: &str, wasm: &[u8], actor: &str) -> Result<Deployed> {
        validate_name("entity type", entity_type).map_err(|e| Error::BadRequest(e.to_string()))?;
        if entity_type.starts_with('$') {
            return Err(Error::BadRequest(format!(
                "entity types starting with `$` are the node's own (`{entity_type}`); choose another name"
            )));
        }
        self.check_module_leader()?;
        let _guard = self.admin.lock().await;
        let digest = digest_of(wasm);
        // Re-deploying the active bytes is a no-op that returns the existing version.
        // (Not when that version did not load here: then the bytes are compiled again.)
        if let Some(info) = self.store.module(entity_type)?
            && let Some(v) = info.active_version().filter(|v| v.digest == digest)
            && self.load_error(entity_type).is_none()
        {
            let warnings = self
                .get(entity_type)
                .map(|a| a.module.warnings().to_vec())
                .unwrap_or_default();
            return Ok(Deployed {
                version: v.clone(),
                created: false,
                replayed: 0,
                warnings,
            });
        }
        let compiled = self
            .loader
            .compile(wasm, Some((entity_type, &digest)))
            .await
            .map_err(|e| match e {
                cella_host::Error::InvalidComponent(m) => Error::InvalidComponent(m),
                other => Error::InvalidComponent(other.to_string()),
            })?;
        let result = self
            .activate(entity_type, wasm, &digest, compiled, actor)
            .await;
        if result.is_err() {
            // A refused version leaves no artifact file behind (unless a stored version has
            // the same bytes).
            let stored = self.store.module(entity_type).ok().flatten();
            if !stored.is_some_and(|info| info.versions.iter().any(|v| v.digest == digest)) {
                self.loader.remove_file(entity_type, &digest);
            }
        }
        result
    }

    /// The rest of a deploy once `wasm` is compiled: the replay check, persisting and
    /// activating.
    async fn activate(
        &self,
        entity_type: &str,
        wasm: &[u8],
        digest: &str,
        compiled: Compiled,
        actor: &str,
    ) -> Result<Deployed> {
        let module = compiled.module;
        if let Ok(active) = self.get(entity_type) {
            let (old, new) = (active.module.descriptor(), module.descriptor());
            if old.crdt != new.crdt
                || (old.kind == EntityKind::Crdt) != (new.kind == EntityKind::Crdt)
            {
                let name = |d: &cella_host::Descriptor| match d.crdt {
                    Some(t) => format!("a crdt entity of type {}", t.as_str()),
                    None => format!("a {} entity", d.kind.as_str()),
                };
                return Err(Error::BadRequest(format!(
                    "`{entity_type}` is {}; this component declares {} (the data of existing entities would not fit: deploy it under a new type name)",
                    name(old),
                    name(new)
                )));
            }
        }
        let replayed = self.verify_replay(entity_type, &module).await?;
        let warnings = module.warnings().to_vec();
        let descriptor = module.descriptor();
        let meta = ModuleVersion {
            version: self.store.next_module_version(entity_type)?,
            digest: digest.to_string(),
            size: wasm.len() as u64,
            created_ms: crate::audit::now_ms(),
            kind: descriptor.kind,
            commands: descriptor.commands.clone(),
        };
        let op = cella_cluster::ModuleOp::Put {
            entity_type: entity_type.to_string(),
            version: meta.clone(),
            component: wasm.to_vec(),
        };
        let mut record = crate::audit::record(actor, "deploy");
        record.entity_type = Some(entity_type.to_string());
        record.version = Some(meta.version);
        record.digest = Some(digest.to_string());
        let info = if self.replicate(op, record).await? {
            self.store
                .module(entity_type)?
                .ok_or_else(|| Error::Internal("the replicated module is not stored".into()))?
        } else {
            self.store.put_module_version(entity_type, meta, wasm)?
        };
        let meta = info
            .active_version()
            .cloned()
            .ok_or_else(|| Error::Internal("the stored module has no active version".into()))?;
        if let Some(artifact) = &compiled.artifact {
            self.store
                .put_artifact(entity_type, meta.version, artifact)?;
        }
        self.insert(
            entity_type,
            Active {
                version: meta.version,
                digest: digest.to_string(),
                module,
                limits: self.store.module_limits(entity_type)?,
            },
        );
        Ok(Deployed {
            version: meta,
            created: true,
            replayed,
            warnings,
        })
    }

    /// Replays the existing entities of `entity_type` (up to [`REPLAY_CHECK_LIMIT`]) through
    /// `module` and refuses it if any of them cannot be replayed or rendered: a version that
    /// cannot take over the state it would inherit never becomes active. Returns how many
    /// entities were replayed.
    async fn verify_replay(&self, entity_type: &str, module: &Module) -> Result<usize> {
        let report =
            replay::check(&self.store, entity_type, None, module, REPLAY_CHECK_LIMIT).await?;
        if report.failed.is_empty() {
            return Ok(report.checked);
        }
        let examples: Vec<String> = report
            .failed
            .iter()
            .take(3)
            .map(|(key, error)| format!("{entity_type}/{key}: {error}"))
            .collect();
        Err(Error::InvalidComponent(format!(
            "this version cannot take over the existing entities of `{entity_type}`: {} of {} \
             replayed entities failed ({}); the active version keeps serving",
            report.failed.len(),
            report.checked,
            examples.join("; ")
        )))
    }

    /// Shadow replay: compiles a candidate and replays the journals of existing entities
    /// through it and through the active version, reporting where they differ. Nothing is
    /// stored or activated.
    pub async fn check(&self, entity_type: &str, wasm: &[u8]) -> Result<serde_json::Value> {
        validate_name("entity type", entity_type).map_err(|e| Error::BadRequest(e.to_string()))?;
        let candidate = self
            .loader
            .compile(wasm, None)
            .await
            .map_err(|e| match e {
                cella_host::Error::InvalidComponent(m) => Error::InvalidComponent(m),
                other => Error::InvalidComponent(other.to_string()),
            })?
            .module;
        let active = self.get(entity_type).ok();
        let report = replay::check(
            &self.store,
            entity_type,
            active.as_ref().map(|a| &a.module),
            &candidate,
            REPLAY_CHECK_LIMIT,
        )
        .await?;
        let mut json = report.to_json();
        json["type"] = entity_type.into();
        json["activeVersion"] = active.as_ref().map(|a| a.version).into();
        json["candidate"] = serde_json::json!({
            "digest": digest_of(wasm),
            "kind": candidate.descriptor().kind.as_str(),
            "commands": candidate.descriptor().commands,
        });
        Ok(json)
    }

    /// Makes an earlier (or any stored) version active again: `to`, or else the newest version
    /// older than the active one. The version must be able to replay the existing entities.
    pub async fn rollback(
        &self,
        entity_type: &str,
        to: Option<u32>,
        actor: &str,
    ) -> Result<Deployed> {
        self.check_module_leader()?;
        let _guard = self.admin.lock().await;
        let info = self.info(entity_type)?;
        let target = match to {
            Some(v) => info
                .versions
                .iter()
                .find(|m| m.version == v)
                .ok_or_else(|| {
                    let known: Vec<String> =
                        info.versions.iter().map(|m| m.version.to_string()).collect();
                    Error::NotFound(format!(
                        "`{entity_type}` has no version {v} (it has {})",
                        known.join(", ")
                    ))
                })?,
            None => info
                .versions
                .iter()
                .filter(|m| m.version < info.active)
                .max_by_key(|m| m.version)
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "`{entity_type}` v{} is its oldest version; there is nothing to roll back to",
                        info.active
                    ))
                })?,
        }
        .clone();
        let loaded = self.load_version(entity_type, target.version).await?;
        let replayed = self.verify_replay(entity_type, &loaded.module).await?;
        let warnings = loaded.module.warnings().to_vec();
        let op = cella_cluster::ModuleOp::Activate {
            entity_type: entity_type.to_string(),
            version: target.version,
        };
        let mut record = crate::audit::record(actor, "rollback");
        record.entity_type = Some(entity_type.to_string());
        record.version = Some(target.version);
        record.digest = Some(target.digest.clone());
        if !self.replicate(op, record).await? {
            self.store.set_active_version(entity_type, target.version)?;
        }
        self.insert(entity_type, loaded);
        Ok(Deployed {
            version: target,
            created: true,
            replayed,
            warnings,
        })
    }

    /// Sets the limits `limits` gives of a deployed type (the others stay), replicated with the
    /// module metadata and recorded in the audit trail as done by `actor`. Returns them all.
    pub async fn set_limits(
        &self,
        entity_type: &str,
        limits: TypeLimits,
        actor: &str,
    ) -> Result<TypeLimits> {
        self.check_module_leader()?;
        let _guard = self.admin.lock().await;
        if self.store.module(entity_type)?.is_none() {
            return Err(Error::UnknownType(entity_type.to_string()));
        }
        let merged = self.store.module_limits(entity_type)?.merged(limits);
        let op = cella_cluster::ModuleOp::Limits {
            entity_type: entity_type.to_string(),
            limits: merged,
        };
        let mut record = crate::audit::record(actor, "limits");
        record.entity_type = Some(entity_type.to_string());
        let show = |name: &str, v: Option<u64>| {
            v.map_or(format!("{name}=default"), |v| format!("{name}={v}"))
        };
        record.detail = Some(format!(
            "{} {} {}",
            show("deadline-ms", merged.deadline_ms),
            show("max-concurrent", merged.max_concurrent.map(u64::from)),
            show("cpu-share", merged.cpu_share.map(u64::from)),
        ));
        if !self.replicate(op, record).await? {
            self.store.put_module_limits(entity_type, &merged)?;
        }
        if let Ok(mut active) = self.get(entity_type) {
            active.limits = merged;
            self.insert(entity_type, active);
        }
        Ok(merged)
    }

    /// The scheduling limits set for `entity_type` (empty when none were).
    pub fn limits(&self, entity_type: &str) -> Result<TypeLimits> {
        Ok(self.store.module_limits(entity_type)?)
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
    pub async fn delete(&self, entity_type: &str, actor: &str) -> Result<()> {
        self.check_module_leader()?;
        let _guard = self.admin.lock().await;
        let Some(info) = self.store.module(entity_type)? else {
            return Err(Error::UnknownType(entity_type.to_string()));
        };
        let op = cella_cluster::ModuleOp::Delete {
            entity_type: entity_type.to_string(),
        };
        let mut record = crate::audit::record(actor, "delete");
        record.entity_type = Some(entity_type.to_string());
        record.version = Some(info.active);
        record.digest = info.active_version().map(|v| v.digest.clone());
        if !self.replicate(op, record).await? {
            self.store.delete_module(entity_type)?;
        }
        if let Ok(mut map) = self.active.write() {
            map.remove(entity_type);
        }
        self.forget_failure(entity_type);
        self.loader.remove_type(entity_type);
        Ok(())
    }
}
