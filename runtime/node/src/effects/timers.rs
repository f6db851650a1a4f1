//! Durable timers on the partition leader: a queue of the next firing of every timer of the
//! partitions led here, and the loop that fires them as commands to their entity when due.
//! The entity consumes the firing in the command's own append; a firing it no longer knows
//! (replaced, cancelled, fired already) is refused as stale and dropped here.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use cella_core::{EntityId, TimerRow};
use tracing::Instrument;

use super::{Dispatcher, group_of, lock};
use crate::{
    entities::{Invocation, TimerFire, now_ms, recorded_failure},
    error::Error,
};

/// The next firing of each timer, ordered by due time.
#[derive(Default)]
pub(super) struct TimerQueue {
    by_due: BTreeMap<(u64, EntityId, String), TimerRow>,
    due_of: HashMap<(EntityId, String), u64>,
}

impl TimerQueue {
    /// Sets (or replaces) the timer `timer.name` of `id`.
    pub(super) fn set(&mut self, id: EntityId, timer: TimerRow) {
        self.remove(&id, &timer.name);
        self.due_of
            .insert((id.clone(), timer.name.clone()), timer.due_ms);
        self.by_due
            .insert((timer.due_ms, id, timer.name.clone()), timer);
    }

    /// Removes the timer `name` of `id`.
    pub(super) fn remove(&mut self, id: &EntityId, name: &str) {
        if let Some(due) = self.due_of.remove(&(id.clone(), name.to_string())) {
            self.by_due.remove(&(due, id.clone(), name.to_string()));
        }
    }

    /// When the earliest timer is due.
    fn next_due(&self) -> Option<u64> {
        self.by_due.keys().next().map(|(due, _, _)| *due)
    }

    /// Takes the timers due at `now`.
    fn take_due(&mut self, now: u64) -> Vec<(EntityId, TimerRow)> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id, name), timer) = entry.remove_entry();
            self.due_of.remove(&(id.clone(), name));
            due.push((id, timer));
        }
        due
    }
}

/// The longest the loop sleeps without looking again.
const IDLE_WAIT: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Fires timers when due, until the node is gone.
    pub(super) async fn run_timers(self: Arc<Self>) {
        loop {
            if self.node.strong_count() == 0 {
                return;
            }
            let now = now_ms();
            let (due, next) = {
                let mut queue = lock(&self.timers);
                (queue.take_due(now), queue.next_due())
            };
            for (id, timer) in due {
                // A trace of its own: the command that set the timer may be long gone.
                let span = tracing::debug_span!(
                    parent: None,
                    "timer.fire",
                    entity = %id,
                    timer = %timer.name,
                    command = %timer.command,
                );
                tokio::spawn(self.clone().fire(id, timer).instrument(span));
            }
            let wait = next.map_or(IDLE_WAIT, |next| {
                Duration::from_millis(next.saturating_sub(now_ms())).min(IDLE_WAIT)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.timers_changed.notified() => {}
            }
        }
    }

    /// Fires one timer: its command to its entity, here.
    async fn fire(self: Arc<Self>, id: EntityId, timer: TimerRow) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let lane = self.lane(group_of(&node, &id));
        let Ok(_permit) = lane.acquire().await else {
            return;
        };
        let lag = now_ms().saturating_sub(timer.due_ms);
        let invocation = Invocation {
            timer: Some(TimerFire {
                name: timer.name.clone(),
                schedule_id: timer.schedule_id.clone(),
                fired: timer.fired,
            }),
            ..Invocation::default()
        };
        let result = node
            .entities
            .invoke(
                &id.entity_type,
                &id.key,
                &timer.command,
                timer.payload.clone(),
                &invocation,
            )
            .await;
        match result {
            Ok(_) => {
                node.metrics.effects.timers_fired.inc();
                node.metrics
                    .effects
                    .timer_lag
                    .observe(Duration::from_millis(lag));
            }
            // Replaced, cancelled or fired already; or led elsewhere now (its new leader
            // fires it).
            Err(Error::StaleTimer(_) | Error::NotLeader { .. }) => {}
            Err(e) if recorded_failure(&e).is_some() => {
                // The entity's own answer: the firing was consumed.
                node.metrics.effects.timers_fired.inc();
                tracing::info!("timer `{}` of {id} fired and failed: {e}", timer.name);
            }
            Err(e) => {
                // Not consumed (storage, leadership in flux): try again shortly.
                node.metrics.effects.retried.inc();
                tracing::debug!("timer `{}` of {id} will fire again: {e}", timer.name);
                let retry = TimerRow {
                    due_ms: now_ms() + 100,
                    ..timer
                };
                self.set_timer(id, retry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(name: &str, due_ms: u64) -> TimerRow {
        TimerRow {
            name: name.into(),
            schedule_id: "s".into(),
            due_ms,
            every_ms: None,
            command: "c".into(),
            payload: "null".into(),
            fired: 0,
        }
    }

    #[test]
    fn queue_orders_replaces_and_removes() {
        let mut q = TimerQueue::default();
        let a = EntityId::new("t", "a");
        q.set(a.clone(), timer("x", 30));
        q.set(a.clone(), timer("y", 10));
        q.set(a.clone(), timer("x", 20));
        assert_eq!(q.next_due(), Some(10));
        q.remove(&a, "y");
        assert_eq!(q.next_due(), Some(20));
        assert!(q.take_due(19).is_empty());
        let due = q.take_due(25);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.due_ms, 20);
        assert_eq!(q.next_due(), None);
    }
}
