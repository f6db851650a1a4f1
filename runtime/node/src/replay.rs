//! Folding journals into state, shared by entity activation and by module checks.
//!
//! [`fold`] turns a snapshot plus journal entries into the entity's state with a given module
//! (value entities: the newest written state; event-sourced: `apply` over every event).
//! [`check`] is the *shadow replay* behind deploys, rollbacks and `?check=true`: it folds the
//! journals of existing entities of a type through a candidate module and compares the result
//! with what the active module makes of them, without activating anything.

use cella_core::{EntityId, EntityKind, Journal, JournalEntry, JournalPayload};
use cella_host::Module;
use cella_store::Store;

use crate::error::{Error, Result};

/// Why a fold failed.
pub enum FoldError {
    /// The journal does not fit the module's kind (events for a value entity or the reverse).
    Mismatch(String),
    /// The guest failed while folding.
    Guest(cella_host::Error),
}

/// Events handed to the guest per fold call at most, and their bytes (a batch may pass the
/// bytes bound by one event): a long journal is folded in several calls, each within the
/// call's deadline.
const FOLD_EVENTS: usize = 512;
const FOLD_BYTES: usize = 1 << 20;

/// Folds `entries` (in order, after `state`) with `module`. Returns the state and the number of
/// events applied. Event-sourced journals are folded in batches across entries
/// ([`cella_host::Instance::fold`]: one guest call per batch when the component exports `fold`).
pub async fn fold(
    module: &Module,
    mut state: Option<Vec<u8>>,
    entries: &[JournalEntry],
) -> Result<(Option<Vec<u8>>, u64), FoldError> {
    let kind = module.descriptor().kind;
    let mut instance = None;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    let mut applied = 0;
    for entry in entries {
        match (&entry.payload, kind) {
            (JournalPayload::State(s), EntityKind::Value) => state = Some(s.clone()),
            (JournalPayload::Events(events), EntityKind::EventSourced) => {
                for event in events {
                    if batch.len() >= FOLD_EVENTS || bytes >= FOLD_BYTES {
                        state = fold_batch(module, &mut instance, state, &mut batch).await?;
                        bytes = 0;
                    }
                    bytes += event.len();
                    batch.push(event.clone());
                    applied += 1;
                }
            }
            (_, kind) => {
                return Err(FoldError::Mismatch(format!(
                    "journal entry {} does not fit a {} entity",
                    entry.seq,
                    kind.as_str()
                )));
            }
        }
    }
    state = fold_batch(module, &mut instance, state, &mut batch).await?;
    Ok((state, applied))
}

/// Folds the events of `batch` (emptied) into `state`, on `instance` (made at the first batch).
async fn fold_batch(
    module: &Module,
    instance: &mut Option<cella_host::Instance>,
    state: Option<Vec<u8>>,
    batch: &mut Vec<Vec<u8>>,
) -> Result<Option<Vec<u8>>, FoldError> {
    if batch.is_empty() {
        return Ok(state);
    }
    let inst = match instance {
        Some(inst) => inst,
        None => instance.insert(module.instantiate().await.map_err(FoldError::Guest)?),
    };
    let folded = inst.fold(state, batch).await.map_err(FoldError::Guest)?;
    batch.clear();
    Ok(folded)
}

/// One entity whose state differs between the active module and a candidate.
pub struct Divergence {
    pub key: String,
    pub current: serde_json::Value,
    pub candidate: serde_json::Value,
}

/// What a shadow replay found.
#[derive(Default)]
pub struct CheckReport {
    /// Entities replayed.
    pub checked: usize,
    pub diverged: Vec<Divergence>,
    /// Entities the candidate could not replay or render, with the reason.
    pub failed: Vec<(String, String)>,
    /// Whether more entities exist than were checked.
    pub truncated: bool,
}

impl CheckReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "checked": self.checked,
            "truncated": self.truncated,
            "diverged": self.diverged.iter().map(|d| serde_json::json!({
                "key": d.key, "current": d.current, "candidate": d.candidate,
            })).collect::<Vec<_>>(),
            "failed": self.failed.iter().map(|(key, error)| serde_json::json!({
                "key": key, "error": error,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Folds an entity's whole journal with `module` and renders the state as JSON.
async fn replay_rendered(
    module: &Module,
    entries: &[JournalEntry],
) -> std::result::Result<serde_json::Value, String> {
    let (state, _) = fold(module, None, entries).await.map_err(|e| match e {
        FoldError::Mismatch(m) => m,
        FoldError::Guest(g) => format!("replay failed: {g}"),
    })?;
    let Some(bytes) = state else {
        return Ok(serde_json::Value::Null);
    };
    let mut instance = module.instantiate().await.map_err(|e| e.to_string())?;
    let text = instance
        .render_state(&bytes)
        .await
        .map_err(|e| format!("rendering the state failed: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("the state rendered as invalid JSON: {e}"))
}

/// Replays the journals of up to `limit` entities of `entity_type` through `candidate` and
/// compares them with `active` (when there is an active module).
pub async fn check(
    store: &Store,
    entity_type: &str,
    active: Option<&Module>,
    candidate: &Module,
    limit: usize,
) -> Result<CheckReport> {
    let keys = store.entity_keys(entity_type, None, limit.saturating_add(1))?;
    let mut report = CheckReport {
        truncated: keys.len() > limit,
        ..CheckReport::default()
    };
    for key in keys.into_iter().take(limit) {
        let id = EntityId::new(entity_type, key.as_str());
        let entries = store
            .read_journal(&id, 0, usize::MAX)
            .map_err(Error::from)?;
        report.checked += 1;
        let candidate_state = match replay_rendered(candidate, &entries).await {
            Ok(v) => v,
            Err(e) => {
                report.failed.push((key, e));
                continue;
            }
        };
        if let Some(active) = active {
            // What the active module makes of the journal is the reference; if it cannot
            // replay it either, there is nothing to compare against.
            if let Ok(current) = replay_rendered(active, &entries).await
                && current != candidate_state
            {
                report.diverged.push(Divergence {
                    key,
                    current,
                    candidate: candidate_state,
                });
            }
        }
    }
    Ok(report)
}
