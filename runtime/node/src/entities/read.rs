//! Answers that change nothing: settling them (everything they observed durable, the lease
//! still held, so reads are linearizable), and the `inspect` and `journal` reads, rendered to
//! JSON by the entity's module.

use std::sync::atomic::Ordering;

use cella_core::{EntityId, JournalPayload, Lease};

use super::{Entities, cache::Slot};
use crate::error::{Error, Result};

/// The inspected state of an entity.
pub struct Inspection {
    pub sequence: u64,
    pub module_version: u32,
    pub state: serde_json::Value,
}

impl Entities {
    /// The inspection of a crdt entity (this node's replica) or an ephemeral value entity
    /// (its state in memory here); `None` for a journaled entity.
    async fn inspect_unjournaled(
        &self,
        active: &crate::registry::Active,
        id: &EntityId,
    ) -> Result<Option<Inspection>> {
        let descriptor = active.module.descriptor();
        if let (Some(crdt), Some(crdts)) = (descriptor.crdt, &self.crdts) {
            return Ok(Some(Inspection {
                sequence: 0,
                module_version: active.version,
                state: crdts.value(&id.entity_type, &id.key, crate::crdt::kind_of(crdt)),
            }));
        }
        if descriptor.durability == cella_host::Durability::Durable {
            return Ok(None);
        }
        let (sequence, state) = self.ephemeral_state(id).await?;
        let state = match state {
            Some(bytes) => self.render(active, &bytes).await?,
            None => serde_json::Value::Null,
        };
        Ok(Some(Inspection {
            sequence,
            module_version: active.version,
            state,
        }))
    }

    /// `bytes` rendered as JSON by the module's `render-state`.
    async fn render(
        &self,
        active: &crate::registry::Active,
        bytes: &[u8],
    ) -> Result<serde_json::Value> {
        let mut instance = active
            .module
            .instantiate()
            .await
            .map_err(|e| self.map_host_error(e))?;
        let text = instance
            .render_state(bytes)
            .await
            .map_err(|e| self.map_host_error(e))?;
        parse_rendered(&text)
    }

    /// Makes an answer computed from the cached state (up to `seq`) without changing it safe to
    /// give: every change up to `seq` is durable, and this node still holds the `lease` the
    /// state was cached under (so no other node can have changed the entity since: the read
    /// is linearizable).
    pub(super) async fn settle_read(
        &self,
        id: &EntityId,
        slot: &Slot,
        seq: u64,
        lease: Option<Lease>,
    ) -> Result<()> {
        if slot.durable_seq.load(Ordering::Acquire) < seq {
            // Appends are durable in submission order: a barrier resolves once everything
            // submitted before it is durable.
            self.journal.barrier(id).await?;
            slot.durable_seq.fetch_max(seq, Ordering::AcqRel);
        }
        if let Some(lease) = lease
            && let Err(e) = self.journal.confirm(id, lease).await
        {
            // Nothing changed: when another node leads now, the answer is to ask it there.
            self.lease(id)?;
            return Err(e.into());
        }
        Ok(())
    }

    /// The entity's current durable state rendered as JSON by its module.
    pub async fn inspect(&self, entity_type: &str, key: &str) -> Result<Inspection> {
        cella_core::validate_name("key", key)?;
        let active = self.registry.get_loaded(entity_type).await?;
        let id = EntityId::new(entity_type, key);
        if let Some(inspection) = self.inspect_unjournaled(&active, &id).await? {
            return Ok(inspection);
        }
        // Entities led elsewhere get no cache slot (re-checked under the entity's lock).
        self.owner(&id)?;
        let slot = self.slot(&id)?;
        let mut guard = slot.loaded.lock().await;
        self.ensure_loaded(&id, &active, &mut guard).await?;
        self.account(&slot, &id, guard.as_ref());
        let Some(loaded) = guard.as_ref() else {
            return Err(Error::Internal("entity vanished while locked".into()));
        };
        let (seq, state, lease) = (loaded.seq, loaded.state.clone(), loaded.lease);
        drop(guard);
        self.settle_read(&id, &slot, seq, lease).await?;
        let state = match state {
            Some(bytes) => self.render(&active, &bytes).await?,
            None => serde_json::Value::Null,
        };
        Ok(Inspection {
            sequence: seq,
            module_version: active.version,
            state,
        })
    }

    /// Journal entries of an entity from `from`, rendered as JSON.
    pub async fn journal(
        &self,
        entity_type: &str,
        key: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        cella_core::validate_name("key", key)?;
        let active = self.registry.get_loaded(entity_type).await?;
        let id = EntityId::new(entity_type, key);
        // Appends resolve once committed; `ready` then waits until they are applied to the
        // store read below.
        let lease = self.lease(&id)?;
        self.journal.barrier(&id).await?;
        if let Some(lease) = lease {
            self.journal.ready(&id, lease).await?;
        }
        let entries = self.journal.read_journal(&id, from, limit)?;
        let mut instance = active
            .module
            .instantiate()
            .await
            .map_err(|e| self.map_host_error(e))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let mut v = serde_json::json!({
                "seq": e.seq,
                "commandId": e.command_id,
                "command": e.command,
                "timestampMs": e.timestamp_ms,
                "moduleVersion": e.module_version,
            });
            match &e.payload {
                JournalPayload::Events(events) => {
                    let mut rendered = Vec::with_capacity(events.len());
                    for ev in events {
                        let text = instance
                            .render_event(ev)
                            .await
                            .map_err(|e| self.map_host_error(e))?;
                        rendered.push(parse_rendered(&text)?);
                    }
                    v["events"] = serde_json::Value::Array(rendered);
                }
                JournalPayload::State(s) => {
                    let text = instance
                        .render_state(s)
                        .await
                        .map_err(|e| self.map_host_error(e))?;
                    v["state"] = parse_rendered(&text)?;
                }
            }
            out.push(v);
        }
        Ok(out)
    }
}

fn parse_rendered(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::EntityFailed(format!("the module rendered invalid JSON: {e}")))
}
