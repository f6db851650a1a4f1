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
    state: Option<Vec<u8>>,
    entries: &[JournalEntry],
) -> Result<(Option<Vec<u8>>, u64), FoldError> {
    let (state, applied, _) = fold_keeping(module, state, entries).await?;
    Ok((state, applied))
}

/// [`fold`], also returning the fresh instance the events were folded in (none when there were
/// no events), for the caller to use again for the same entity.
pub async fn fold_keeping(
    module: &Module,
    mut state: Option<Vec<u8>>,
    entries: &[JournalEntry],
) -> Result<(Option<Vec<u8>>, u64, Option<cella_host::Instance>), FoldError> {
    let kind = module.descriptor().kind;
    let mut instance = None;
    let mut batch = Batch::new(FOLD_EVENTS, FOLD_BYTES);
    let mut applied = 0;
    for entry in entries {
        match (&entry.payload, kind) {
            (JournalPayload::State(s), EntityKind::Value) => state = Some(s.clone()),
            (JournalPayload::Events(events), EntityKind::EventSourced) => {
                for event in events {
                    if let Some(full) = batch.push(event) {
                        state = fold_batch(module, &mut instance, state, &full).await?;
                    }
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
    let rest = batch.take();
    state = fold_batch(module, &mut instance, state, &rest).await?;
    Ok((state, applied, instance))
}

/// Events gathered for one fold call, bounded by count and bytes.
struct Batch {
    events: Vec<Vec<u8>>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl Batch {
    fn new(max_events: usize, max_bytes: usize) -> Batch {
        Batch {
            events: Vec::new(),
            bytes: 0,
            max_events,
            max_bytes,
        }
    }

    /// Adds `event`; when the batch was already full, returns it (to fold first) and starts the
    /// next one with `event`.
    fn push(&mut self, event: &[u8]) -> Option<Vec<Vec<u8>>> {
        let full = (self.events.len() >= self.max_events || self.bytes >= self.max_bytes)
            .then(|| self.take());
        self.bytes += event.len();
        self.events.push(event.to_vec());
        full
    }

    /// The events gathered so far (the batch starts empty again).
    fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }
}

/// Folds the events of `batch` into `state`, on `instance` (made at the first batch).
async fn fold_batch(
    module: &Module,
    instance: &mut Option<cella_host::Instance>,
    state: Option<Vec<u8>>,
    batch: &[Vec<u8>],
) -> Result<Option<Vec<u8>>, FoldError> {
    if batch.is_empty() {
        return Ok(state);
    }
    let inst = match instance {
        Some(inst) => inst,
        None => instance.insert(module.instantiate().await.map_err(FoldError::Guest)?),
    };
    inst.fold(state, batch).await.map_err(FoldError::Guest)
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

#[cfg(test)]
mod tests {
    use super::Batch;

    /// Batches keep every event once, in order, within the count bound, and within the bytes
    /// bound but for the event that crosses it.
    #[test]
    fn batches_keep_order_and_bounds() {
        let events: Vec<Vec<u8>> = (0..1300u32)
            .map(|i| i.to_be_bytes().repeat(1 + (i as usize % 7)))
            .collect();
        let mut batch = Batch::new(512, 600);
        let mut batches = Vec::new();
        for event in &events {
            batches.extend(batch.push(event));
        }
        batches.push(batch.take());
        assert!(batch.take().is_empty());
        let flat: Vec<Vec<u8>> = batches.iter().flatten().cloned().collect();
        assert_eq!(flat, events);
        for b in &batches {
            assert!(!b.is_empty() && b.len() <= 512, "{}", b.len());
            let bytes: usize = b.iter().map(Vec::len).sum();
            let last = b.last().map_or(0, Vec::len);
            assert!(bytes - last < 600, "{bytes} bytes");
        }
        let mut counted = Batch::new(512, usize::MAX);
        let mut sizes: Vec<usize> = events
            .iter()
            .filter_map(|e| counted.push(e))
            .map(|b| b.len())
            .collect();
        sizes.push(counted.take().len());
        assert_eq!(sizes, [512, 512, 276]);
    }
}
