//! The [`Host`]: the wasmtime engine (component model, pooling allocator, epoch interruption),
//! the linker with the locked-down WASI imports, the epoch ticker thread, instance admission,
//! counters, and loading (compiling and validating) entity components into [`Module`]s, each
//! bound to the contract (`cella:entity@0.1.0` or `@0.2.0`) whose entity interface it exports.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::Semaphore;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    component::{Component, Linker},
};

use crate::{
    Error, Module, artifact,
    bindings::{self, Contract, Pre},
    pacing::Pacing,
    sandbox::StoreState,
};

/// How often the engine's epoch advances; deadlines are checked at this granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-component limits, generous enough for large guests (interpreters compiled to components
/// carry a dozen or more core modules, several memories and many tables).
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 50;
const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
const MAX_TABLES_PER_COMPONENT: u32 = 50;
const TABLE_ELEMENTS: usize = 100_000;
/// Pool totals per admitted instance (an instance of a typical component uses one memory and one
/// or two tables; the pool has room for more).
const MEMORIES_PER_INSTANCE: u32 = 2;
const TABLES_PER_INSTANCE: u32 = 4;
/// Bytes of each memory and table slot kept mapped between instances (see `engine_config`).
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Limits of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Longest a single guest call (including instantiation) may run; default 1 s.
    pub deadline: Duration,
    /// Most linear memory one instance may use, in bytes (all its memories together);
    /// default 64 MiB.
    pub memory_limit: usize,
    /// Most instances alive at once; further `instantiate` calls wait for one to be dropped.
    /// Default 2048 (a slot costs address space, not memory, until it is used).
    pub max_instances: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            deadline: Duration::from_secs(1),
            memory_limit: 64 << 20,
            max_instances: 2048,
        }
    }
}

/// Counters of a host since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Instances created, in total.
    pub instances_created: u64,
    /// Instances alive now.
    pub instances_live: u64,
    /// Guest calls made (describe, handle, apply, render).
    pub calls: u64,
    /// Calls or instantiations that trapped (out of memory included, deadlines not).
    pub traps: u64,
    /// Calls or instantiations stopped because they ran past the deadline.
    pub deadline_hits: u64,
    /// Pauses of one epoch tick that long calls took while other calls were starting.
    pub paced_pauses: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) instances_created: AtomicU64,
    pub(crate) instances_live: AtomicU64,
    pub(crate) calls: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) deadline_hits: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a [`Host`] and everything made from it share.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) config: HostConfig,
    pub(crate) counters: Counters,
    /// Admission: one permit per live instance, `max_instances` in all.
    pub(crate) permits: Arc<Semaphore>,
    /// When calls start, for pacing the long ones (`pacing.rs`).
    pub(crate) pacing: Arc<Pacing>,
    _ticker: EpochTicker,
}

/// Runs entity components: compiles them into [`Module`]s and gives out sandboxed instances.
/// Cheap to clone; clones share the engine, the instance pool and the counters.
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Creates the engine, the instance pool and the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Host, Error> {
        if config.max_instances == 0 {
            return Err(Error::Internal("max_instances must be at least 1".into()));
        }
        if config.deadline.is_zero() {
            return Err(Error::Internal("the deadline must be positive".into()));
        }
        let engine = Engine::new(&engine_config(&config)?)
            .map_err(|e| Error::Internal(format!("cannot create the wasm engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| bindings::add_to_linker(&mut linker))
            .map_err(|e| Error::Internal(format!("cannot link host interfaces: {e:#}")))?;
        let ticker = EpochTicker::start(engine.clone())?;
        let permits = Arc::new(Semaphore::new(config.max_instances as usize));
        Ok(Host {
            shared: Arc::new(Shared {
                engine,
                linker,
                config,
                counters: Counters::default(),
                permits,
                pacing: Arc::new(Pacing::new()),
                _ticker: ticker,
            }),
        })
    }

    /// The limits this host was created with.
    pub fn config(&self) -> &HostConfig {
        &self.shared.config
    }

    /// Compiles and validates a component: it must be a WebAssembly component that exports
    /// `cella:entity/entity@0.2.0` or `cella:entity/entity@0.1.0` (the contract it is then
    /// served by, [`Module::contract`]) and imports nothing beyond WASI; its `describe` is
    /// called once and its descriptor checked. Fails with [`Error::InvalidComponent`] saying what is
    /// wrong. Compilation runs on a blocking thread.
    pub async fn load(&self, wasm: &[u8]) -> Result<Module, Error> {
        check_header(wasm)?;
        // Refuse what the component imports before spending seconds compiling it.
        crate::capabilities::check(
            crate::capabilities::scan_imports(wasm)?
                .iter()
                .map(String::as_str),
        )?;
        let engine = self.shared.engine.clone();
        let bytes = wasm.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| Error::Internal(format!("compilation task failed: {e}")))?
            .map_err(|e| {
                Error::InvalidComponent(format!("not a valid WebAssembly component: {e:#}"))
            })?;
        self.validate(component).await
    }

    /// Like [`Host::load`], from an artifact made by [`Module::serialize`] (precompiled for this
    /// engine). Fails, so that the caller can fall back to [`Host::load`], when the artifact is
    /// damaged or was made by a different build or configuration of the engine.
    ///
    /// The artifact contains machine code that is run as is: only pass artifacts that this
    /// program wrote itself (a checksum guards against damage, not against forgery).
    pub async fn load_precompiled(&self, artifact: &[u8]) -> Result<Module, Error> {
        let code = artifact::open(artifact).map_err(Error::InvalidComponent)?;
        if wasmtime::Engine::detect_precompiled(code) != Some(wasmtime::Precompiled::Component) {
            return Err(Error::InvalidComponent(
                "precompiled artifact does not hold a component".into(),
            ));
        }
        // SAFETY: `code` is what `Component::serialize` produced in `Module::serialize` (the
        // envelope's checksum matches), and wasmtime checks that it was compiled by this version
        // of wasmtime with settings compatible with this engine before using it.
        let component =
            unsafe { Component::deserialize(&self.shared.engine, code) }.map_err(|e| {
                Error::InvalidComponent(format!("precompiled artifact is not usable here: {e:#}"))
            })?;
        self.validate(component).await
    }

    /// Like [`Host::load_precompiled`], from an artifact file written by [`write_artifact_file`]:
    /// the engine maps the file instead of copying the code into memory, so the machine code is
    /// backed by the file (shared with the page cache, evictable) rather than anonymous memory.
    /// The file is checked against its sidecar (length and checksum) first. Fails, so that the
    /// caller can fall back, when the file is missing, damaged, or made for another engine.
    ///
    /// The file must not be modified while the module lives: [`write_artifact_file`] only ever
    /// replaces it (a rename), which leaves a mapped file as it was.
    pub async fn load_precompiled_file(&self, path: &Path) -> Result<Module, Error> {
        let engine = self.shared.engine.clone();
        let path = path.to_path_buf();
        let component = tokio::task::spawn_blocking(move || {
            artifact::check_file(&path).map_err(Error::InvalidComponent)?;
            // (It parses the ELF headers, section headers included, through a read cache.)
            if !matches!(
                wasmtime::Engine::detect_precompiled_file(&path),
                Ok(Some(wasmtime::Precompiled::Component))
            ) {
                return Err(Error::InvalidComponent(
                    "precompiled artifact does not hold a component".into(),
                ));
            }
            // SAFETY: the file holds what `Component::serialize` produced (its length and
            // checksum match the sidecar this program wrote with it), it is only ever replaced
            // by a rename, never modified in place, and wasmtime checks that it was compiled by
            // this version of wasmtime with settings compatible with this engine.
            unsafe { Component::deserialize_file(&engine, &path) }.map_err(|e| {
                Error::InvalidComponent(format!("precompiled artifact is not usable here: {e:#}"))
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("loading task failed: {e}")))??;
        self.validate(component).await
    }

    /// Counters since the host was created.
    pub fn stats(&self) -> HostStats {
        let c = &self.shared.counters;
        HostStats {
            instances_created: c.instances_created.load(Ordering::Relaxed),
            instances_live: c.instances_live.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
            traps: c.traps.load(Ordering::Relaxed),
            deadline_hits: c.deadline_hits.load(Ordering::Relaxed),
            paced_pauses: self.shared.pacing.pauses.load(Ordering::Relaxed),
        }
    }

    /// Picks the contract a compiled component implements by its export, checks the component
    /// against it and reads its descriptor.
    async fn validate(&self, component: Component) -> Result<Module, Error> {
        let engine = &self.shared.engine;
        let Some(contract) = Contract::of(engine, &component) else {
            let exports: Vec<String> = component
                .component_type()
                .exports(engine)
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            let found = if exports.is_empty() {
                "it exports nothing".to_string()
            } else {
                format!("it exports {}", exports.join(", "))
            };
            let [newest, older] = Contract::ALL.map(Contract::export);
            return Err(Error::InvalidComponent(format!(
                "missing export `{newest}` (or the older `{older}`; {found}); an entity \
                 component implements the world `cella:entity/entity-world@{}`",
                Contract::ALL[0].version()
            )));
        };
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let warnings = crate::capabilities::check(imports.iter().map(String::as_str))?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| {
                Error::InvalidComponent(format!(
                    "the component needs an import the host does not provide: {e:#}"
                ))
            })?;
        let pre = Pre::new(contract, pre).map_err(|e| {
            Error::InvalidComponent(format!(
                "export `{}` is incomplete: {e:#}",
                contract.export()
            ))
        })?;
        let pre = Arc::new(pre);
        let mut instance = crate::instance::Instance::create(&self.shared, &pre)
            .await
            .map_err(|e| load_error("instantiating the component failed", e))?;
        let descriptor = instance
            .describe()
            .await
            .map_err(|e| load_error("calling `describe` failed", e))?;
        descriptor
            .validate()
            .map_err(|m| Error::InvalidComponent(format!("invalid descriptor: {m}")))?;
        drop(instance);
        Ok(Module::new(
            self.shared.clone(),
            component,
            pre,
            descriptor,
            warnings,
        ))
    }
}

/// Writes an artifact made by [`Module::serialize`] to `path` for
/// [`Host::load_precompiled_file`]: the bare code there and the envelope's header beside it
/// (`path` + `.seal`), each synced and renamed into place, so an existing file is replaced,
/// never modified. The artifact's envelope is checked first.
pub fn write_artifact_file(artifact: &[u8], path: &Path) -> Result<(), Error> {
    artifact::write_file(artifact, path).map_err(Error::Internal)
}

/// Removes an artifact file written by [`write_artifact_file`] and its sidecar, if present.
pub fn remove_artifact_file(path: &Path) {
    artifact::remove_file(path);
}

/// Maps an error met while validating a component to `InvalidComponent`, keeping host-side
/// failures (which say nothing about the component) as they are.
fn load_error(what: &str, e: Error) -> Error {
    match e {
        Error::Internal(m) => Error::Internal(m),
        Error::DeadlineExceeded => Error::InvalidComponent(format!("{what}: deadline exceeded")),
        Error::Trap(m) | Error::Guest(m) | Error::InvalidComponent(m) => {
            Error::InvalidComponent(format!("{what}: {m}"))
        }
    }
}

/// Tells apart garbage, core modules and components before handing bytes to the compiler.
fn check_header(wasm: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(Error::InvalidComponent(format!(
            "not a WebAssembly component: the {} bytes do not start with the WebAssembly magic \
             number `\\0asm`",
            wasm.len()
        )));
    }
    if &wasm[4..8] == CORE_MODULE {
        return Err(Error::InvalidComponent(
            "not a WebAssembly component: this is a core WebAssembly module; build the entity \
             as a component (for example for the wasm32-wasip2 target)"
                .into(),
        ));
    }
    Ok(())
}

/// The engine configuration for a host with these limits.
fn engine_config(config: &HostConfig) -> Result<Config, Error> {
    const PAGE: usize = 64 << 10;
    let memory_limit = config
        .memory_limit
        .max(PAGE)
        .checked_next_multiple_of(PAGE)
        .ok_or_else(|| Error::Internal("memory_limit is too large".into()))?;
    let n = config.max_instances;

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MEMORIES_PER_INSTANCE))
        .total_tables(n.saturating_mul(TABLES_PER_INSTANCE))
        .total_stacks(n)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_tables_per_module(4)
        .max_memories_per_module(1)
        .table_elements(TABLE_ELEMENTS)
        .max_component_instance_size(8 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(memory_limit)
        // A slot is reused by the next instance right away: reset the low pages a guest dirties
        // (stack, data, the start of its heap) in place instead of returning them to the kernel
        // and faulting them back in. With PAGEMAP_SCAN (Linux 6.7+) only dirty pages are reset.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY.min(memory_limit))
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(Enabled::Auto);

    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        // Reserve only what an instance may use (plus guards), not 4 GiB per memory.
        .memory_reservation(memory_limit as u64)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(cfg)
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]; stopped on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cella-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_components() {
        let msg = |bytes: &[u8]| match check_header(bytes) {
            Err(Error::InvalidComponent(m)) => m,
            other => panic!("unexpected {other:?}"),
        };
        assert!(msg(b"hello world").starts_with("not a WebAssembly component"));
        assert!(msg(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    /// An artifact file loads mapped, and damaged or missing files are refused.
    #[tokio::test]
    async fn precompiled_file_round_trip() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let wasm = std::fs::read(dir.join("components/counter.wasm"))
            .expect("target/components/counter.wasm: run `cargo xtask build-examples` first");
        let host = Host::new(HostConfig {
            max_instances: 4,
            ..HostConfig::default()
        })
        .unwrap();
        let module = host.load(&wasm).await.unwrap();
        let artifact = module.serialize().unwrap();
        let path = dir.join(format!("host-test-{}.cwasm", std::process::id()));
        write_artifact_file(&artifact, &path).unwrap();
        let mapped = host.load_precompiled_file(&path).await.unwrap();
        assert_eq!(mapped.descriptor(), module.descriptor());
        // Its own serialization is the same artifact.
        assert_eq!(mapped.serialize().unwrap(), artifact);

        let mut damaged = std::fs::read(&path).unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(
            host.load_precompiled_file(&path).await,
            Err(Error::InvalidComponent(_))
        ));
        remove_artifact_file(&path);
        assert!(host.load_precompiled_file(&path).await.is_err());
        assert!(write_artifact_file(b"not an artifact", &path).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn host_starts_and_stops() {
        let host = Host::new(HostConfig {
            max_instances: 4,
            ..HostConfig::default()
        })
        .unwrap();
        let clone = host.clone();
        drop(host);
        assert_eq!(clone.stats(), HostStats::default());
        drop(clone);
        assert!(
            Host::new(HostConfig {
                max_instances: 0,
                ..HostConfig::default()
            })
            .is_err()
        );
    }
}
