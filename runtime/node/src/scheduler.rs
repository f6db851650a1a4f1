//! Fair sharing of the node's guest execution between entity types.
//!
//! Every guest command call takes a [`Permit`] from the [`Scheduler`] first and gives it back
//! when the call returns, with the call's wall time (the guest's busy time: guest code runs on
//! the async workers and yields only at epoch ticks, so a call's wall time is its share of a
//! worker). Per type the scheduler keeps a lane: calls running, a FIFO of waiting commands, and
//! a virtual time (busy seconds divided by the type's `cpu-share`).
//!
//! *Invariants.* At most `capacity` guest calls run at once, and at most `max-concurrent` of one
//! type. A type whose calls average longer than `slow_call` is *slow*: while any fast type has
//! run in the last second, slow types together hold at most half of the capacity (at least
//! one call), so a type burning whole deadlines cannot take every worker. When a slot frees,
//! the waiting type with the least virtual time goes first (weighted fair queuing): a type that
//! burned its share waits behind the others. A command is admitted at once, without queueing,
//! when a slot is free and its type has no one waiting; otherwise it waits, at most for its
//! type's deadline and behind at most `max_queued` others of its type, and is refused with
//! [`Error::Overloaded`] (HTTP 429 with `Retry-After`) beyond either bound, naming the limit
//! that held it: `queue` (the queue was full), `max-concurrent` (its own calls held every slot
//! it may have) or `cpu-share` (other types went first).
//!
//! The fast path is one uncontended lock to admit and one to release; no task is woken.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use cella_core::TypeLimits;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Node-wide defaults of the scheduler (flags of `cella serve`).
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Guest calls running at once on the node (0: the number of CPUs).
    pub capacity: usize,
    /// Default `max-concurrent` of a type (0: the capacity).
    pub max_concurrent: u32,
    /// Default `cpu-share` of a type.
    pub cpu_share: u32,
    /// Commands of one type waiting at most.
    pub max_queued: usize,
    /// A type whose calls average longer than this is slow.
    pub slow_call: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            capacity: 0,
            max_concurrent: 0,
            cpu_share: 1,
            max_queued: 256,
            slow_call: Duration::from_millis(20),
        }
    }
}

/// How long fast work counts as present for the slow lane's bound.
const FAST_RECENT: Duration = Duration::from_secs(1);
/// Weight of the newest call in a lane's average call time.
const EWMA: f64 = 0.2;

/// One waiting command: woken with whether it was admitted into the slow lane.
struct Waiter {
    tx: oneshot::Sender<bool>,
    since: Instant,
}

/// Upper bounds (seconds) of the buckets of a type's guest call times: from a warm Rust call
/// (tens of µs) to a fresh interpreter (milliseconds) and a call run to its deadline.
pub(crate) const CALL_BUCKETS: [f64; 15] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0,
];

/// One type's lane and its counters (read by `sched_metrics`).
#[derive(Default)]
pub(crate) struct Lane {
    running: u32,
    waiting: VecDeque<Waiter>,
    /// Busy seconds divided by the type's share.
    vtime: f64,
    /// Average call time, seconds.
    avg_call: f64,
    max_concurrent: u32,
    share: u32,
    pub(crate) busy_seconds: f64,
    pub(crate) calls: u64,
    /// Calls by time taken: one count per bucket of [`CALL_BUCKETS`] and one past the last,
    /// each counting only its own calls.
    pub(crate) call_buckets: [u64; CALL_BUCKETS.len() + 1],
    pub(crate) queued_seconds: f64,
    pub(crate) queued: u64,
    pub(crate) rejected_queue: u64,
    pub(crate) rejected_wait: u64,
}

struct State {
    running: usize,
    slow_running: usize,
    /// The virtual time of the lane last admitted: a lane coming back from idle starts there.
    vclock: f64,
    last_fast: Option<Instant>,
    lanes: HashMap<Arc<str>, Lane>,
}

/// Admits guest calls fairly between types (see the module docs).
pub struct Scheduler {
    capacity: usize,
    options: SchedulerOptions,
    state: Mutex<State>,
}

/// A running guest call's slot; given back, with the call's time, when dropped.
pub struct Permit<'a> {
    scheduler: &'a Scheduler,
    entity_type: Arc<str>,
    slow: bool,
    started: Instant,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.scheduler
            .release(&self.entity_type, self.slow, Some(self.started.elapsed()));
    }
}

/// A queued command; gives its slot back if it was admitted after it stopped waiting.
struct Pending<'a> {
    scheduler: &'a Scheduler,
    entity_type: &'a str,
    rx: Option<oneshot::Receiver<bool>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(slow) = rx.try_recv() {
                self.scheduler.release(self.entity_type, slow, None);
            }
        }
    }
}

impl Scheduler {
    pub fn new(options: SchedulerOptions) -> Self {
        let capacity = match options.capacity {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Self {
            capacity,
            options,
            state: Mutex::new(State {
                running: 0,
                slow_running: 0,
                vclock: 0.0,
                last_fast: None,
                lanes: HashMap::new(),
            }),
        }
    }

    /// Guest calls running at once on the node.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `max-concurrent` and `cpu-share` of a type with `limits`.
    fn effective(&self, limits: &TypeLimits) -> (u32, u32) {
        let max = limits.max_concurrent.unwrap_or(self.options.max_concurrent);
        let max = if max == 0 {
            u32::try_from(self.capacity).unwrap_or(u32::MAX)
        } else {
            max
        };
        let share = limits.cpu_share.unwrap_or(self.options.cpu_share).max(1);
        (max, share)
    }

    /// A slot for one guest call of `entity_type`, waiting at most `deadline` for it.
    pub async fn acquire(
        &self,
        entity_type: &str,
        limits: &TypeLimits,
        deadline: Duration,
    ) -> Result<Permit<'_>> {
        let (max, share) = self.effective(limits);
        let rx = {
            let mut state = self.lock();
            let now = Instant::now();
            let slow_cap = (self.capacity / 2).max(1);
            let State {
                running,
                slow_running,
                vclock,
                last_fast,
                lanes,
            } = &mut *state;
            // The type's name is allocated once, on its first command.
            let name = match lanes.get_key_value(entity_type) {
                Some((name, _)) => name.clone(),
                None => Arc::from(entity_type),
            };
            let lane = lanes.entry(name.clone()).or_default();
            lane.max_concurrent = max;
            lane.share = share;
            if lane.running == 0 && lane.waiting.is_empty() {
                lane.vtime = lane.vtime.max(*vclock);
            }
            let slow = lane.avg_call > self.options.slow_call.as_secs_f64();
            let fast_recent = last_fast.is_some_and(|t| now.duration_since(t) < FAST_RECENT);
            let eligible =
                lane.running < max && (!slow || !fast_recent || *slow_running < slow_cap);
            if *running < self.capacity && lane.waiting.is_empty() && eligible {
                lane.running += 1;
                *running += 1;
                if slow {
                    *slow_running += 1;
                } else {
                    *last_fast = Some(now);
                }
                *vclock = lane.vtime;
                return Ok(Permit {
                    scheduler: self,
                    entity_type: name,
                    slow,
                    started: now,
                });
            }
            if lane.waiting.len() >= self.options.max_queued {
                lane.rejected_queue += 1;
                let bound = u64::try_from(self.options.max_queued).unwrap_or(u64::MAX);
                return Err(overloaded(entity_type, lane, "queue", bound));
            }
            let (tx, rx) = oneshot::channel();
            lane.waiting.push_back(Waiter { tx, since: now });
            rx
        };
        let mut pending = Pending {
            scheduler: self,
            entity_type,
            rx: Some(rx),
        };
        let admitted = match pending.rx.as_mut() {
            Some(rx) => tokio::time::timeout(deadline, rx).await,
            None => return Err(Error::Internal("scheduler wait lost".into())),
        };
        let slow = match admitted {
            Ok(Ok(slow)) => slow,
            Ok(Err(_)) => return Err(Error::Internal("the scheduler dropped a waiter".into())),
            Err(_) => {
                // Admitted just as the wait ran out: take the slot after all.
                let mut rx = pending.rx.take();
                let late = rx.as_mut().and_then(|rx| {
                    rx.close();
                    rx.try_recv().ok()
                });
                match late {
                    Some(slow) => slow,
                    None => {
                        let mut state = self.lock();
                        let lane = state.lanes.entry(Arc::from(entity_type)).or_default();
                        lane.waiting.retain(|w| !w.tx.is_closed());
                        lane.rejected_wait += 1;
                        // Waited out its deadline: behind its own calls, or behind other types.
                        let (limit, value) = if lane.running >= lane.max_concurrent {
                            ("max-concurrent", lane.max_concurrent)
                        } else {
                            ("cpu-share", lane.share)
                        };
                        return Err(overloaded(entity_type, lane, limit, u64::from(value)));
                    }
                }
            }
        };
        pending.rx = None;
        Ok(Permit {
            scheduler: self,
            entity_type: Arc::from(entity_type),
            slow,
            started: Instant::now(),
        })
    }

    /// Gives a slot back (with the call's time, when it ran) and admits who is next.
    fn release(&self, entity_type: &str, slow: bool, ran: Option<Duration>) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        if slow {
            state.slow_running = state.slow_running.saturating_sub(1);
        }
        if let Some(lane) = state.lanes.get_mut(entity_type) {
            lane.running = lane.running.saturating_sub(1);
            if let Some(ran) = ran {
                let secs = ran.as_secs_f64();
                lane.busy_seconds += secs;
                lane.calls += 1;
                let bucket = CALL_BUCKETS.partition_point(|&bound| bound < secs);
                lane.call_buckets[bucket] += 1;
                lane.vtime += secs / f64::from(lane.share.max(1));
                lane.avg_call = if lane.calls == 1 {
                    secs
                } else {
                    lane.avg_call * (1.0 - EWMA) + secs * EWMA
                };
            }
        }
        self.dispatch(&mut state);
    }

    /// Admits waiting commands while slots are free, least virtual time first.
    fn dispatch(&self, state: &mut State) {
        let now = Instant::now();
        let slow_cap = (self.capacity / 2).max(1);
        let slow_call = self.options.slow_call.as_secs_f64();
        while state.running < self.capacity {
            let fast_recent = state
                .last_fast
                .is_some_and(|t| now.duration_since(t) < FAST_RECENT);
            let slow_room = !fast_recent || state.slow_running < slow_cap;
            let next = state
                .lanes
                .iter()
                .filter(|(_, l)| {
                    !l.waiting.is_empty()
                        && l.running < l.max_concurrent
                        && (slow_room || l.avg_call <= slow_call)
                })
                .min_by(|a, b| a.1.vtime.total_cmp(&b.1.vtime))
                .map(|(t, _)| t.clone());
            let Some(ty) = next else {
                return;
            };
            let State {
                running,
                slow_running,
                vclock,
                last_fast,
                lanes,
            } = state;
            let Some(lane) = lanes.get_mut(&ty) else {
                return;
            };
            let Some(waiter) = lane.waiting.pop_front() else {
                continue;
            };
            let slow = lane.avg_call > slow_call;
            if waiter.tx.send(slow).is_err() {
                continue;
            }
            lane.queued += 1;
            lane.queued_seconds += now.duration_since(waiter.since).as_secs_f64();
            lane.running += 1;
            *running += 1;
            if slow {
                *slow_running += 1;
            } else {
                *last_fast = Some(now);
            }
            *vclock = lane.vtime;
        }
    }

    /// Runs `f` over every lane, in type order (for `/metrics`).
    pub(crate) fn each_lane(&self, mut f: impl FnMut(&str, &Lane)) {
        let state = self.lock();
        let mut types: Vec<&Arc<str>> = state.lanes.keys().collect();
        types.sort();
        for ty in types {
            if let Some(lane) = state.lanes.get(ty) {
                f(ty.as_ref(), lane);
            }
        }
    }
}

/// The refusal of a command of `entity_type` over its `limit`, with a retry hint: the time
/// its queue needs to drain at the lane's average call time (at least a second).
fn overloaded(entity_type: &str, lane: &Lane, limit: &'static str, value: u64) -> Error {
    let queued = lane.waiting.len() as f64 + 1.0;
    let per_slot = lane.avg_call * queued / f64::from(lane.max_concurrent.max(1));
    Error::Overloaded {
        entity_type: entity_type.to_string(),
        limit,
        value,
        retry_after: (per_slot.ceil() as u64).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32) -> TypeLimits {
        TypeLimits {
            max_concurrent: Some(max),
            ..TypeLimits::default()
        }
    }

    #[tokio::test]
    async fn a_type_waits_for_its_own_slots_and_is_refused_past_its_queue() {
        let scheduler = Scheduler::new(SchedulerOptions {
            capacity: 4,
            max_queued: 1,
            ..SchedulerOptions::default()
        });
        let wait = Duration::from_millis(50);
        let first = scheduler.acquire("spin", &limits(1), wait).await.unwrap();
        // Another type still gets a slot at once.
        let other = scheduler
            .acquire("counter", &limits(1), wait)
            .await
            .unwrap();
        drop(other);
        // The second `spin` waits past its deadline: refused.
        let waited = scheduler.acquire("spin", &limits(1), wait).await;
        assert!(matches!(
            waited,
            Err(Error::Overloaded {
                limit: "max-concurrent",
                ..
            })
        ));
        drop(first);
        let again = scheduler.acquire("spin", &limits(1), wait).await.unwrap();
        drop(again);
        let mut rejected = 0;
        scheduler.each_lane(|ty, lane| {
            if ty == "spin" {
                rejected = lane.rejected_wait;
            }
        });
        assert_eq!(rejected, 1);
    }

    #[tokio::test]
    async fn the_type_with_less_virtual_time_goes_first() {
        let scheduler = Scheduler::new(SchedulerOptions {
            capacity: 1,
            ..SchedulerOptions::default()
        });
        let wait = Duration::from_secs(5);
        let none = TypeLimits::default();
        // `busy` has used the node before; `idle` has not.
        let used = scheduler.acquire("busy", &none, wait).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        drop(used);
        let held = scheduler.acquire("busy", &none, wait).await.unwrap();
        let order = Mutex::new(Vec::new());
        let admit = async |ty: &'static str| {
            let permit = scheduler.acquire(ty, &none, wait).await.unwrap();
            order.lock().unwrap().push(ty);
            drop(permit);
        };
        tokio::join!(admit("busy"), admit("idle"), async {
            // Both are queued (a current-thread runtime runs them up to their wait first).
            tokio::task::yield_now().await;
            drop(held);
        });
        assert_eq!(*order.lock().unwrap(), ["idle", "busy"]);
    }
}
