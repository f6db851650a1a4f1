//! Load: what a node measures for placement. Each partition's submitter counts the appends
//! (one per command) and their bytes while this node leads it, and each append's shard; once
//! a second the sampler turns
//! the counts into rates and reads the node's CPU: the process's CPU time (`/proc/self/stat`,
//! exited threads included), how busy the CPUs it may run on are, by anyone
//! (`/proc/stat` over its affinity mask, `Cpus_allowed_list` in `/proc/self/status`: a node
//! that shares its CPUs with a neighbour, or is pinned to fewer than it needs, finds them busy),
//! and, for operators, the time its threads waited on a run queue
//! (`/proc/self/task/*/schedstat`). Rates are smoothed over a few seconds, so a burst does not
//! move leadership and a move shows in the numbers a few seconds after it is made. Without
//! `/proc` the CPU figures stay zero.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::GroupId;

pub mod wire;

/// The smoothing of the rates: each sample moves them this far toward the new value (a time
/// constant of about three samples).
const SMOOTHING: f64 = 0.3;
/// `/proc`'s clock ticks per second (`USER_HZ`, 100 on every Linux architecture Cella runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// The counters of one partition on this node.
#[derive(Default, Debug)]
pub struct GroupMeter {
    commands: AtomicU64,
    bytes: AtomicU64,
}

impl GroupMeter {
    /// Counts one append of about `bytes` bytes.
    pub fn record(&self, bytes: usize) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One partition's load as its leader measures it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupLoad {
    pub group: GroupId,
    /// Appends (commands that changed state) per second.
    pub commands: f64,
    /// Bytes appended per second.
    pub bytes: f64,
    /// Its hottest shards, hottest first (at most [`HOT_SHARDS`]; between nodes they travel in
    /// a section of the report of their own, see [`wire`]).
    #[serde(default)]
    pub shards: Vec<ShardLoad>,
}

/// How many of a partition's hottest shards a load report lists.
pub const HOT_SHARDS: usize = 32;
/// A shard with fewer appends per second than this is not listed.
const MIN_SHARD_RATE: f64 = 0.5;

/// One shard's load on the node leading its partition.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardLoad {
    pub shard: u32,
    /// Appends per second.
    pub commands: f64,
}

/// One node's load.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoad {
    pub node: u64,
    /// CPUs this node may run on (its affinity mask).
    pub cpus: u32,
    /// CPU used, in cores (1.0: one core busy all the time).
    pub cpu: f64,
    /// Time its threads were ready to run but waited for a CPU, in cores (threads that wait
    /// at once each count).
    pub waiting: f64,
    /// How busy the CPUs it may run on are, by any process: 0 (idle) to 1 (always busy).
    pub busy: f64,
    /// [`NodeLoad::pressure`] when reported (for readers; plans compute it).
    pub pressure: f64,
    /// The partitions this node leads, with their voters, and their load.
    pub led: Vec<LedGroup>,
}

/// A partition a node leads.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedGroup {
    pub load: GroupLoad,
    pub term: u64,
    pub voters: Vec<u64>,
}

impl NodeLoad {
    /// How busy its CPUs are: by anyone ([`NodeLoad::busy`]), and at least by this node.
    pub fn pressure(&self) -> f64 {
        self.busy.max(self.cpu / f64::from(self.cpus.max(1)))
    }
}

/// The CPU counters of the process at one instant.
#[derive(Clone, Debug, Default)]
struct CpuSample {
    at: Option<Instant>,
    /// Process CPU time in clock ticks.
    ticks: u64,
    /// Run-queue wait per thread (thread id → ns): a thread's wait counts only between two
    /// samples that both saw it.
    waits: BTreeMap<u64, u64>,
    /// The busy and total time of the CPUs this node may run on (`/proc/stat` ticks).
    cpus_busy: u64,
    cpus_total: u64,
    /// How many CPUs those are.
    cpus: Option<u32>,
}

/// The sampler's state between samples.
#[derive(Debug, Default)]
struct Rates {
    cpu: CpuSample,
    counts: BTreeMap<GroupId, (u64, u64)>,
    smoothed_cpu: f64,
    smoothed_wait: f64,
    smoothed_busy: f64,
    groups: BTreeMap<GroupId, (f64, f64)>,
    /// Per shard: the count at the last sample and the smoothed rate.
    shard_counts: Vec<u64>,
    shard_rates: Vec<f64>,
}

/// A node's load meter: a [`GroupMeter`] per partition, an append counter per shard and the
/// smoothed rates.
#[derive(Debug)]
pub struct LoadMeter {
    groups: BTreeMap<GroupId, Arc<GroupMeter>>,
    shards: Box<[AtomicU64]>,
    rates: Mutex<Rates>,
    /// CPUs when `/proc` does not tell.
    cpus: u32,
}

impl LoadMeter {
    /// A meter for `groups` and `shards` shards.
    pub fn new(groups: impl IntoIterator<Item = GroupId>, shards: u32) -> LoadMeter {
        LoadMeter {
            groups: groups
                .into_iter()
                .map(|g| (g, Arc::new(GroupMeter::default())))
                .collect(),
            shards: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            rates: Mutex::default(),
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
        }
    }

    /// The counters of `group`.
    pub fn group(&self, group: GroupId) -> Arc<GroupMeter> {
        self.groups.get(&group).cloned().unwrap_or_default()
    }

    /// Counts one append of an entity of `shard`.
    pub fn record_shard(&self, shard: u32) {
        if let Some(count) = self.shards.get(shard as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes a sample: updates the smoothed rates from the counters and the process's CPU.
    pub fn sample(&self) {
        let now = Instant::now();
        let cpu = read_cpu(now);
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = rates
            .cpu
            .at
            .map(|at| now.duration_since(at).as_secs_f64())
            .unwrap_or(0.0);
        if elapsed > 0.0 {
            let used = cpu.ticks.saturating_sub(rates.cpu.ticks) as f64 / TICKS_PER_SECOND;
            let waited: u64 = cpu
                .waits
                .iter()
                .filter_map(|(tid, w)| Some(w.saturating_sub(*rates.cpu.waits.get(tid)?)))
                .sum();
            let (cpu_rate, wait_rate) = (used / elapsed, waited as f64 / 1e9 / elapsed);
            rates.smoothed_cpu += SMOOTHING * (cpu_rate - rates.smoothed_cpu);
            rates.smoothed_wait += SMOOTHING * (wait_rate - rates.smoothed_wait);
            let total = cpu.cpus_total.saturating_sub(rates.cpu.cpus_total);
            if total > 0 {
                let busy = cpu.cpus_busy.saturating_sub(rates.cpu.cpus_busy) as f64 / total as f64;
                rates.smoothed_busy += SMOOTHING * (busy.min(1.0) - rates.smoothed_busy);
            }
        }
        for (group, meter) in &self.groups {
            let counts = (
                meter.commands.load(Ordering::Relaxed),
                meter.bytes.load(Ordering::Relaxed),
            );
            let before = rates.counts.insert(*group, counts);
            if let (Some((c0, b0)), true) = (before, elapsed > 0.0) {
                let c = counts.0.saturating_sub(c0) as f64 / elapsed;
                let b = counts.1.saturating_sub(b0) as f64 / elapsed;
                let entry = rates.groups.entry(*group).or_default();
                entry.0 += SMOOTHING * (c - entry.0);
                entry.1 += SMOOTHING * (b - entry.1);
            }
        }
        if rates.shard_counts.len() != self.shards.len() {
            rates.shard_counts = vec![0; self.shards.len()];
            rates.shard_rates = vec![0.0; self.shards.len()];
        }
        let Rates {
            shard_counts,
            shard_rates,
            ..
        } = &mut *rates;
        for ((count, before), rate) in self.shards.iter().zip(shard_counts).zip(shard_rates) {
            let now = count.load(Ordering::Relaxed);
            if elapsed > 0.0 {
                let r = now.saturating_sub(*before) as f64 / elapsed;
                *rate += SMOOTHING * (r - *rate);
            }
            *before = now;
        }
        rates.cpu = cpu;
    }

    /// The node's load as of the last sample; `led` lists the partitions for which `leads`
    /// gives a term and voters (those this node leads), each with its hottest shards (the
    /// shards `partition_of` puts in it).
    pub fn report(
        &self,
        node: u64,
        leads: impl Fn(GroupId) -> Option<(u64, Vec<u64>)>,
        partition_of: impl Fn(u32) -> GroupId,
    ) -> NodeLoad {
        let rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hot: BTreeMap<GroupId, Vec<ShardLoad>> = BTreeMap::new();
        for (shard, rate) in (0u32..).zip(&rates.shard_rates) {
            if *rate >= MIN_SHARD_RATE {
                hot.entry(partition_of(shard)).or_default().push(ShardLoad {
                    shard,
                    commands: round(*rate),
                });
            }
        }
        for shards in hot.values_mut() {
            shards.sort_by(|a, b| b.commands.total_cmp(&a.commands));
            shards.truncate(HOT_SHARDS);
        }
        let led = self
            .groups
            .keys()
            .filter_map(|group| {
                let (term, voters) = leads(*group)?;
                let (commands, bytes) = rates.groups.get(group).copied().unwrap_or_default();
                Some(LedGroup {
                    load: GroupLoad {
                        group: *group,
                        commands: round(commands),
                        bytes: round(bytes),
                        shards: hot.remove(group).unwrap_or_default(),
                    },
                    term,
                    voters,
                })
            })
            .collect();
        let mut load = NodeLoad {
            node,
            // The affinity mask as of the last sample (`taskset -p` may change it).
            cpus: rates.cpu.cpus.unwrap_or(self.cpus),
            cpu: round(rates.smoothed_cpu),
            waiting: round(rates.smoothed_wait),
            busy: round(rates.smoothed_busy),
            pressure: 0.0,
            led,
        };
        load.pressure = round(load.pressure());
        load
    }
}

/// Rounded to three decimals (for readable reports).
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The process's CPU counters now (zeros where `/proc` cannot be read).
fn read_cpu(at: Instant) -> CpuSample {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The command name (field 2) may hold spaces: fields count from its `)`.
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    let mut waits = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let wait = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse().ok());
            if let Some(wait) = wait {
                waits.insert(tid, wait);
            }
        }
    }
    let allowed = allowed_cpus();
    let (cpus_busy, cpus_total) = allowed.as_deref().map_or((0, 0), read_cpus_busy);
    CpuSample {
        at: Some(at),
        ticks,
        waits,
        cpus_busy,
        cpus_total,
        cpus: allowed
            .filter(|a| !a.is_empty())
            .and_then(|a| u32::try_from(a.len()).ok()),
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-3,6`); `None` if unknown.
fn allowed_cpus() -> Option<Vec<u32>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Busy and total ticks of CPUs `allowed`, summed (`/proc/stat`: busy is all but idle and
/// iowait); zeros where unreadable.
fn read_cpus_busy(allowed: &[u32]) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let mut sums = (0, 0);
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let Some(cpu) = fields.next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !allowed.contains(&cpu) {
            continue;
        }
        let ticks: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        sums.0 += total.saturating_sub(idle);
        sums.1 += total;
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_become_rates_of_the_led_groups() {
        let meter = LoadMeter::new([1, 2], 8);
        meter.sample();
        for i in 0..100 {
            meter.group(1).record(50);
            // Shards 2 and 4 are partition 1's, 3 is partition 2's; 9 is no shard.
            meter.record_shard(if i % 4 == 0 { 4 } else { 2 });
            meter.record_shard(3);
            meter.record_shard(9);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        meter.sample();
        let report = meter.report(
            7,
            |g| (g == 1).then(|| (3, vec![7, 8])),
            |s| if s == 3 { 2 } else { 1 },
        );
        assert_eq!(report.node, 7);
        assert!(report.cpus >= 1);
        assert_eq!(report.led.len(), 1, "{report:?}");
        let led = &report.led[0];
        assert_eq!(
            (led.load.group, led.term, led.voters.clone()),
            (1, 3, vec![7, 8])
        );
        // 100 appends in about 50 ms, smoothed by 0.3 from zero: well above zero.
        assert!(led.load.commands > 50.0, "{led:?}");
        assert!(led.load.bytes > led.load.commands * 40.0, "{led:?}");
        // Its shards, hottest first: 2 took three appends in four, 4 the fourth.
        let shards: Vec<u32> = led.load.shards.iter().map(|s| s.shard).collect();
        assert_eq!(shards, [2, 4], "{led:?}");
        assert!(led.load.shards[0].commands > 2.0 * led.load.shards[1].commands);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(report.cpu >= 0.0 && report.waiting >= 0.0);
            assert!((0.0..=1.0).contains(&report.busy), "{report:?}");
            let allowed = allowed_cpus().expect("this process's CPUs");
            assert_eq!(allowed.len() as u32, report.cpus, "{allowed:?}");
            assert!(read_cpus_busy(&allowed).1 > 0);
        }
    }

    #[test]
    fn pressure_is_how_busy_the_cpus_are_at_least_by_the_node() {
        let load = NodeLoad {
            cpus: 2,
            cpu: 1.5,
            busy: 0.5,
            ..Default::default()
        };
        assert_eq!(load.pressure(), 0.75);
        let shared = NodeLoad { busy: 0.9, ..load };
        assert_eq!(shared.pressure(), 0.9);
    }
}
