//! [`Module`] (a validated, compiled entity component, with the contract it implements) and
//! [`Instance`] (one sandboxed instantiation of it): the call paths of each contract, per-call
//! deadlines, memory limits, trap classification and poisoning.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, component::Component};

use crate::{
    CommandContext, Descriptor, Error, Failure, Outcome, artifact,
    bindings::{Guest, Pre, World},
    host::{Counters, Shared},
    pacing::Pacing,
    sandbox::StoreState,
};

/// How long past twice its deadline a call may stay parked in a host wait (a guest sleeping
/// through WASI, say) before it is abandoned. Guest code itself is stopped by epochs once it
/// has run for its deadline (`pacing.rs`: pauses do not count).
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// A compiled, validated entity component. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    shared: Arc<Shared>,
    component: Component,
    pre: Arc<Pre>,
    descriptor: Descriptor,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("contract", &self.contract())
            .field("descriptor", &self.inner.descriptor)
            .finish_non_exhaustive()
    }
}

impl Module {
    pub(crate) fn new(
        shared: Arc<Shared>,
        component: Component,
        pre: Arc<Pre>,
        descriptor: Descriptor,
        warnings: Vec<String>,
    ) -> Module {
        Module {
            inner: Arc::new(ModuleInner {
                shared,
                component,
                pre,
                descriptor,
                warnings,
            }),
        }
    }

    /// The version of `cella:entity` the component implements, `"0.1.0"` or `"0.2.0"` (read
    /// from its export when it was loaded). A `0.1.0` component gets no
    /// [`CommandContext::correlation`] or [`CommandContext::timer`], and its calls and timers
    /// have no [`reply_to`](crate::Call::reply_to) or `every_ms`.
    pub fn contract(&self) -> &'static str {
        self.inner.pre.contract().version()
    }

    /// What the entity declared about itself when it was loaded.
    pub fn descriptor(&self) -> &Descriptor {
        &self.inner.descriptor
    }

    /// What the upload-time capability check found worth saying about an accepted component:
    /// one line per inert interface family it imports (clocks, randomness, files, sockets).
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// The compiled code, for [`Host::load_precompiled`](crate::Host::load_precompiled) (in a
    /// process with the same build and configuration of the host).
    pub fn serialize(&self) -> Result<Vec<u8>, Error> {
        let code = self
            .inner
            .component
            .serialize()
            .map_err(|e| Error::Internal(format!("cannot serialize the module: {e:#}")))?;
        Ok(artifact::seal(&code))
    }

    /// Whether `self` and `other` are the same loaded module (clones of one [`Module`]), so
    /// that an instance of one may serve the other.
    pub fn is(&self, other: &Module) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A fresh instance with its own memory, taken from the instance pool, in the state the
    /// component's initialisation left it: nothing of an earlier instance is in it. Whoever
    /// keeps an instance for several calls decides what those calls may share (the node keeps
    /// one per hot entity, see `cella-node`'s `warm` module). Waits while `max_instances`
    /// instances are alive.
    pub async fn instantiate(&self) -> Result<Instance, Error> {
        Instance::create(&self.inner.shared, &self.inner.pre).await
    }
}

/// One instance of an entity component. Its memory carries over from one call to the next
/// (guest globals included), so the caller decides which calls share an instance. After a trap
/// or a deadline it is poisoned: further calls fail with [`Error::Trap`].
pub struct Instance {
    // Dropped first: the store gives its slot back to the pool before the permit is released.
    store: Store<StoreState>,
    world: World,
    shared: Arc<Shared>,
    poisoned: Option<String>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shared
            .counters
            .instances_live
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Instance {
    pub(crate) async fn create(shared: &Arc<Shared>, pre: &Pre) -> Result<Instance, Error> {
        let permit = shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("instance admission is closed".into()))?;
        let config = &shared.config;
        let mut store = Store::new(
            &shared.engine,
            StoreState::new(config.memory_limit, config.deadline),
        );
        store.limiter(|state| &mut state.limiter);
        // At each tick: the deadline, else a yield (a pause, for a long call beside others).
        let pacing = shared.pacing.clone();
        store.epoch_deadline_callback(move |ctx| Ok(pacing.at_tick(ctx.data())));
        start_call(&mut store, &shared.pacing);
        let result = with_deadline(config.deadline, pre.instantiate(&mut store)).await;
        match result {
            Ok(world) => {
                Counters::bump(&shared.counters.instances_created);
                Counters::bump(&shared.counters.instances_live);
                Ok(Instance {
                    store,
                    world,
                    shared: shared.clone(),
                    poisoned: None,
                    _permit: permit,
                })
            }
            Err(e) => Err(classify(&shared.counters, e, store.data())),
        }
    }

    /// Bytes of linear memory this instance holds (all its memories together): an upper bound
    /// of what keeping it costs.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.used()
    }

    /// Sets the deadline of this instance's next calls: `deadline`, capped at the host's
    /// [`HostConfig::deadline`](crate::HostConfig::deadline) (`None`: the host's).
    pub fn set_deadline(&mut self, deadline: Option<Duration>) {
        let host = self.shared.config.deadline;
        self.store.data_mut().deadline = deadline.map_or(host, |d| d.min(host));
    }

    /// Whether a trap or deadline has made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Whether the guest asked for more memory than the instance's limit allows.
    pub fn hit_memory_limit(&self) -> bool {
        self.store.data().limiter.hit
    }

    /// Handles one command: `Ok(Ok(outcome))` on success, `Ok(Err(failure))` when the guest
    /// refused the command, `Err` when the call itself failed (trap, deadline, host error).
    pub async fn handle(
        &mut self,
        ctx: &CommandContext,
        state: Option<&[u8]>,
        payload: &str,
    ) -> Result<Result<Outcome, Failure>, Error> {
        // The guest call, a child of the command's span (disabled, and free, when no tracing
        // layer wants `DEBUG` spans).
        let span = tracing::debug_span!(
            "guest.call",
            entity.type = %ctx.entity_type,
            command = %ctx.command,
        );
        let call = async {
            Ok(match self.world.guest() {
                Guest::V0_1(guest) => {
                    let ctx = ctx.into();
                    self.call(async |store| guest.call_handle(store, &ctx, state, payload).await)
                        .await?
                        .map(Outcome::from)
                        .map_err(Failure::from)
                }
                Guest::V0_2(guest) => {
                    let ctx = ctx.into();
                    self.call(async |store| guest.call_handle(store, &ctx, state, payload).await)
                        .await?
                        .map(Outcome::from)
                        .map_err(Failure::from)
                }
            })
        };
        tracing::Instrument::instrument(call, span).await
    }

    /// Folds one event into the state (event-sourced entities); a guest error is
    /// [`Error::Guest`].
    pub async fn apply(&mut self, state: Option<&[u8]>, event: &[u8]) -> Result<Vec<u8>, Error> {
        match self.world.guest() {
            Guest::V0_1(guest) => {
                self.call(async |store| guest.call_apply(store, state, event).await)
                    .await?
            }
            Guest::V0_2(guest) => {
                self.call(async |store| guest.call_apply(store, state, event).await)
                    .await?
            }
        }
        .map_err(Error::Guest)
    }

    /// Folds `events` into the state in order (event-sourced entities): in one call when the
    /// component exports `fold`, else one `apply` per event; a guest error is
    /// [`Error::Guest`]. `state` is returned as is when `events` is empty.
    pub async fn fold(
        &mut self,
        mut state: Option<Vec<u8>>,
        events: &[Vec<u8>],
    ) -> Result<Option<Vec<u8>>, Error> {
        if events.is_empty() {
            return Ok(state);
        }
        if let Some(fold) = self.world.fold() {
            let folded = self
                .call(async |store| fold.call_apply_all(store, state.as_deref(), events).await)
                .await?
                .map_err(Error::Guest)?;
            return Ok(Some(folded));
        }
        for event in events {
            state = Some(self.apply(state.as_deref(), event).await?);
        }
        Ok(state)
    }

    /// Renders state bytes as JSON text; a guest error is [`Error::Guest`].
    pub async fn render_state(&mut self, state: &[u8]) -> Result<String, Error> {
        match self.world.guest() {
            Guest::V0_1(guest) => {
                self.call(async |store| guest.call_render_state(store, state).await)
                    .await?
            }
            Guest::V0_2(guest) => {
                self.call(async |store| guest.call_render_state(store, state).await)
                    .await?
            }
        }
        .map_err(Error::Guest)
    }

    /// Renders event bytes as JSON text; a guest error is [`Error::Guest`].
    pub async fn render_event(&mut self, event: &[u8]) -> Result<String, Error> {
        match self.world.guest() {
            Guest::V0_1(guest) => {
                self.call(async |store| guest.call_render_event(store, event).await)
                    .await?
            }
            Guest::V0_2(guest) => {
                self.call(async |store| guest.call_render_event(store, event).await)
                    .await?
            }
        }
        .map_err(Error::Guest)
    }

    /// Calls `describe`.
    pub(crate) async fn describe(&mut self) -> Result<Descriptor, Error> {
        Ok(match self.world.guest() {
            Guest::V0_1(guest) => self
                .call(async |store| guest.call_describe(store).await)
                .await?
                .into(),
            Guest::V0_2(guest) => self
                .call(async |store| guest.call_describe(store).await)
                .await?
                .into(),
        })
    }

    /// Runs one guest call under the deadline; a failed call poisons the instance.
    async fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Trap(format!(
                "instance poisoned by an earlier failed call ({reason})"
            )));
        }
        Counters::bump(&self.shared.counters.calls);
        // Poisoned until the call completes, so that a call abandoned mid-way (its future
        // dropped) leaves the instance unusable.
        self.poisoned = Some("a call was abandoned before it completed".into());
        self.store.data().clear_output();
        start_call(&mut self.store, &self.shared.pacing);
        let deadline = self.store.data().deadline;
        match with_deadline(deadline, f(&mut self.store)).await {
            Ok(value) => {
                self.poisoned = None;
                Ok(value)
            }
            Err(e) => {
                let error = classify(&self.shared.counters, e, self.store.data());
                self.poisoned = Some(match &error {
                    Error::Trap(m) => m.clone(),
                    Error::DeadlineExceeded => "deadline exceeded".into(),
                    other => other.to_string(),
                });
                Err(error)
            }
        }
    }
}

/// Starts the clock of a call: the epoch callback compares against `call_started`, and long
/// calls running elsewhere are paced while calls start (`pacing.rs`).
fn start_call(store: &mut Store<StoreState>, pacing: &Pacing) {
    let now = Instant::now();
    let state = store.data_mut();
    state.call_started = now;
    state.paused.store(0, Ordering::Relaxed);
    pacing.call_started(now);
    store.set_epoch_deadline(1);
}

/// Runs `fut`, giving up on it a little after twice `deadline` (epochs stop guest code once
/// it has run for the deadline, its pacing pauses not counted, and it pauses at most about as
/// long as it runs; this catches calls parked in host waits).
async fn with_deadline<R>(
    deadline: Duration,
    fut: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    match tokio::time::timeout(deadline * 2 + DEADLINE_GRACE, fut).await {
        Ok(result) => result,
        Err(_) => Err(Trap::Interrupt.into()),
    }
}

/// Turns a wasmtime error from instantiation or a call into the host's error, counting it.
fn classify(counters: &Counters, e: wasmtime::Error, state: &StoreState) -> Error {
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        Counters::bump(&counters.deadline_hits);
        return Error::DeadlineExceeded;
    }
    if let Some(limit) = e.downcast_ref::<PoolConcurrencyLimitError>() {
        return Error::Internal(format!("instance pool exhausted: {limit}"));
    }
    Counters::bump(&counters.traps);
    let mut message = match (
        e.downcast_ref::<Trap>(),
        e.downcast_ref::<wasmtime_wasi::I32Exit>(),
    ) {
        (Some(trap), _) => trap.to_string(),
        (None, Some(exit)) => format!("guest exited with status {}", exit.0),
        (None, None) => error_chain(&e),
    };
    if state.limiter.hit {
        message.push_str(&format!(
            " (out of memory: the instance reached its limit of {} bytes)",
            state.limiter.limit()
        ));
    }
    let output = state.output_tail();
    if !output.is_empty() {
        message.push_str(&format!("; guest output: {output}"));
    }
    Error::Trap(message)
}

/// An error's messages, outermost first, leaving out wasm backtraces.
fn error_chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|cause| cause.to_string())
        .filter(|message| !message.starts_with("error while executing at wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}
