//! Pacing of long guest calls, so that one cannot hold a worker thread while other calls wait
//! for it.
//!
//! Guest code runs on the async workers and gives them back only at epoch ticks
//! ([`EPOCH_TICK`]): a guest looping until its deadline would otherwise keep its worker busy
//! for the whole deadline, yielding only for a moment every tick, and the commands of every
//! other entity on that worker would wait behind it. A node's scheduler decides *which* calls
//! run; pacing decides how much of a worker a long one takes while they run.
//!
//! *Rule.* At each epoch tick, a call that has run for [`PACE_AFTER`] or more pauses for one
//! tick before going on, if another guest call started within the last tick (other entities
//! have work). Otherwise it only yields. So a long call alone on the node runs at full speed,
//! and beside other work it takes about half of one worker. Its deadline counts the time it
//! ran, not its pauses: a call that would finish alone finishes beside others too, later.
//! Calls shorter than [`PACE_AFTER`] (every command of a well-behaved entity) never pause.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use wasmtime::UpdateDeadline;

use crate::{host::EPOCH_TICK, sandbox::StoreState};

/// How long a call runs before it is paced (two epoch ticks).
pub(crate) const PACE_AFTER: Duration = Duration::from_millis(20);

/// How stale `last_start` may be, in microseconds.
const RESOLUTION_MICROS: u64 = 1_000;

/// What every call of a host shares for pacing: when the newest call started, and the pauses
/// taken.
pub(crate) struct Pacing {
    /// The origin of `last_start`.
    base: Instant,
    /// When the newest call started, in microseconds since `base`, plus one (0: none yet).
    last_start: AtomicU64,
    /// Pauses taken by long calls, in total.
    pub(crate) pauses: AtomicU64,
}

impl Pacing {
    pub(crate) fn new() -> Pacing {
        Pacing {
            base: Instant::now(),
            last_start: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    /// Notes that a call (or an instantiation) starts at `at`. Written at most once a
    /// millisecond: calls start on every worker, and a line written by all of them at every
    /// call would move between their caches at every call.
    pub(crate) fn call_started(&self, at: Instant) {
        let now = self.micros(at).saturating_add(1);
        let last = self.last_start.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= RESOLUTION_MICROS {
            self.last_start.store(now, Ordering::Relaxed);
        }
    }

    /// Whether some call started within the last epoch tick before `now`.
    fn others_starting(&self, now: Instant) -> bool {
        match self.last_start.load(Ordering::Relaxed) {
            0 => false,
            last => self.micros(now).saturating_add(1).saturating_sub(last) < micros(EPOCH_TICK),
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.base))
    }

    /// What a call does at an epoch tick: stops once it has run (its pauses not counted) for
    /// its deadline; pauses for a tick when it has run for [`PACE_AFTER`] and other calls are
    /// starting; otherwise yields to the other tasks of its worker and goes on.
    pub(crate) fn at_tick(&self, state: &StoreState) -> UpdateDeadline {
        let paused = Duration::from_micros(state.paused.load(Ordering::Relaxed));
        let ran = state.call_started.elapsed().saturating_sub(paused);
        if ran >= state.deadline {
            return UpdateDeadline::Interrupt;
        }
        if ran >= PACE_AFTER && self.others_starting(Instant::now()) {
            self.pauses.fetch_add(1, Ordering::Relaxed);
            let paused = state.paused.clone();
            return UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let started = Instant::now();
                    tokio::time::sleep(EPOCH_TICK).await;
                    paused.fetch_add(micros(started.elapsed()), Ordering::Relaxed);
                }),
            );
        }
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_call_counts_as_starting_for_one_tick() {
        let pacing = Pacing::new();
        let start = Instant::now();
        assert!(!pacing.others_starting(start), "no call has started yet");
        pacing.call_started(start);
        assert!(pacing.others_starting(start));
        assert!(pacing.others_starting(start + EPOCH_TICK / 2));
        // A call starting within the resolution does not move the mark.
        pacing.call_started(start + Duration::from_micros(RESOLUTION_MICROS / 2));
        assert!(!pacing.others_starting(start + EPOCH_TICK));
        assert!(!pacing.others_starting(start + PACE_AFTER));
    }
}
