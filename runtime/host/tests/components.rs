//! The host against real components: the examples (`counter`, `shopping-cart`) and the test
//! guests (`misbehave`, `wrong-world`) built into `target/components/` by
//! `cargo xtask build-examples` (or found in `CELLA_COMPONENTS_DIR`). A missing component fails
//! the test, it is never skipped.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cella_core::EntityKind;
use cella_host::{CommandContext, Error, Failure, Host, HostConfig, Instance, Module, Outcome};

/// `target/components/`, or the directory named by `CELLA_COMPONENTS_DIR`.
fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("CELLA_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/components")
        });
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo xtask build-examples` first",
            path.display()
        )
    })
}

fn host(config: HostConfig) -> Host {
    Host::new(config).expect("host")
}

fn small_host() -> Host {
    host(HostConfig {
        max_instances: 32,
        ..HostConfig::default()
    })
}

fn ctx(command: &str, sequence: u64) -> CommandContext {
    CommandContext {
        entity_type: "test".into(),
        key: "k1".into(),
        command_id: format!("cmd-{sequence}"),
        command: command.into(),
        timestamp_ms: 1_700_000_000_000,
        random_seed: 42,
        sequence,
        correlation: None,
        timer: None,
        message: None,
    }
}

async fn load(host: &Host, name: &str) -> Module {
    match host.load(&component(name)).await {
        Ok(module) => module,
        Err(e) => panic!("loading {name}: {e}"),
    }
}

/// Runs one command on a fresh instance, as the runtime does.
async fn run(module: &Module, command: &str, state: Option<&[u8]>, payload: &str) -> Outcome {
    let mut instance = module.instantiate().await.expect("instantiate");
    match instance.handle(&ctx(command, 0), state, payload).await {
        Ok(Ok(outcome)) => outcome,
        other => panic!("{command} {payload}: {other:?}"),
    }
}

#[tokio::test]
async fn counter_describes_itself() {
    let module = load(&small_host(), "counter").await;
    let d = module.descriptor();
    assert_eq!(d.kind, EntityKind::Value);
    assert_eq!(d.commands, ["add", "get"]);
    assert!(d.has_command("add") && !d.has_command("reset"));
}

#[tokio::test]
async fn counter_threads_state_through_commands() {
    let module = load(&small_host(), "counter").await;

    let first = run(&module, "add", None, "5").await;
    assert_eq!(first.reply, "5");
    assert!(first.events.is_empty() && first.forward.is_none() && first.effects.is_empty());
    let state = first.state.expect("add writes the state");

    let second = run(&module, "add", Some(&state), "-7").await;
    assert_eq!(second.reply, "-2");
    let state = second.state.expect("add writes the state");

    let read = run(&module, "get", Some(&state), "null").await;
    assert_eq!(read.reply, "-2");
    assert_eq!(read.state, None, "get leaves the state unchanged");

    let mut instance = module.instantiate().await.unwrap();
    let rendered = instance.render_state(&state).await.unwrap();
    assert!(rendered.contains("-2"), "{rendered}");
}

#[tokio::test]
async fn counter_reports_failures() {
    let module = load(&small_host(), "counter").await;
    let mut instance = module.instantiate().await.unwrap();
    assert_eq!(
        instance
            .handle(&ctx("reset", 0), None, "null")
            .await
            .unwrap(),
        Err(Failure::UnknownCommand("reset".into()))
    );
    // A refusal is an answer, not a failure of the instance: it keeps serving.
    assert!(matches!(
        instance
            .handle(&ctx("add", 0), None, "\"five\"")
            .await
            .unwrap(),
        Err(Failure::BadRequest(_))
    ));
    assert!(!instance.is_poisoned());
    assert!(
        instance
            .handle(&ctx("get", 0), None, "null")
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn shopping_cart_events_fold_with_apply() {
    let module = load(&small_host(), "shopping-cart").await;
    assert_eq!(module.descriptor().kind, EntityKind::EventSourced);
    assert_eq!(
        module.descriptor().commands,
        ["add-item", "remove-item", "get-cart"]
    );

    let item = r#"{"productId":"socks","name":"Socks","quantity":2}"#;
    let outcome = run(&module, "add-item", None, item).await;
    assert_eq!(outcome.events.len(), 1);

    let mut instance = module.instantiate().await.unwrap();
    let folded = instance.apply(None, &outcome.events[0]).await.unwrap();
    if let Some(state) = &outcome.state {
        assert_eq!(
            &folded, state,
            "apply agrees with the handler's folded state"
        );
    }
    let event = instance.render_event(&outcome.events[0]).await.unwrap();
    assert!(event.contains("socks"), "{event}");
    let state = instance.render_state(&folded).await.unwrap();
    assert!(state.contains("Socks"), "{state}");

    let cart = run(&module, "get-cart", Some(&folded), "null").await;
    assert!(cart.reply.contains("socks"), "{}", cart.reply);
    assert!(cart.events.is_empty());
}

/// The Rust SDK exports `fold`: a batch folds to the state `apply` per event gives, and a bad
/// event in a batch fails the fold with the guest's message.
#[tokio::test]
async fn shopping_cart_folds_a_batch_like_apply_per_event() {
    let module = load(&small_host(), "shopping-cart").await;
    let mut state = None;
    let mut events = Vec::new();
    for product in ["socks", "hat", "socks", "scarf"] {
        let item = format!(r#"{{"productId":"{product}","name":"{product}","quantity":1}}"#);
        let outcome = run(&module, "add-item", state.as_deref(), &item).await;
        state = outcome.state.clone();
        events.extend(outcome.events);
    }
    assert_eq!(events.len(), 4);

    let mut instance = module.instantiate().await.unwrap();
    let mut one_by_one = None;
    for event in &events {
        one_by_one = Some(instance.apply(one_by_one.as_deref(), event).await.unwrap());
    }
    let batch = instance.fold(None, &events).await.unwrap();
    assert_eq!(batch, one_by_one);
    assert_eq!(batch, state, "the handler's own fold agrees");
    let (first, rest) = events.split_at(1);
    let head = instance.fold(None, first).await.unwrap();
    assert_eq!(instance.fold(head, rest).await.unwrap(), one_by_one);
    assert_eq!(instance.fold(None, &[]).await.unwrap(), None);

    let bad = vec![events[0].clone(), b"{}".to_vec()];
    match instance.fold(None, &bad).await {
        Err(Error::Guest(message)) => assert!(message.contains("event"), "{message}"),
        other => panic!("a bad event folded: {other:?}"),
    }
}

#[tokio::test]
async fn shopping_cart_rejects() {
    let module = load(&small_host(), "shopping-cart").await;
    let mut instance = module.instantiate().await.unwrap();
    let result = instance
        .handle(&ctx("remove-item", 0), None, r#"{"productId":"hat"}"#)
        .await;
    assert!(
        matches!(result, Ok(Err(Failure::Rejected(_)))),
        "{result:?}"
    );
    // A guest error from `apply` is an error, not a trap.
    let result = instance.apply(None, b"not an event").await;
    assert!(matches!(result, Err(Error::Guest(_))), "{result:?}");
    assert!(!instance.is_poisoned());
}

#[tokio::test]
async fn garbage_is_not_a_component() {
    let host = small_host();
    for bytes in [&b""[..], b"garbage bytes", b"\0asm\x01\0\0\0"] {
        match host.load(bytes).await {
            Err(Error::InvalidComponent(m)) => {
                assert!(m.starts_with("not a WebAssembly component"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    // The right header followed by junk fails in the compiler, also as InvalidComponent.
    let mut junk = b"\0asm\x0d\0\x01\0".to_vec();
    junk.extend_from_slice(&[0xff; 32]);
    assert!(matches!(
        host.load(&junk).await,
        Err(Error::InvalidComponent(_))
    ));
}

#[tokio::test]
async fn wrong_world_names_the_missing_export() {
    match small_host().load(&component("wrong-world")).await {
        Err(Error::InvalidComponent(m)) => {
            assert!(
                m.contains("missing export `cella:entity/entity@0.2.0`"),
                "{m}"
            );
            assert!(m.contains("`cella:entity/entity@0.1.0`"), "{m}");
            assert!(
                m.contains("`run`"),
                "the message lists what the component exports: {m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn misbehave_host() -> Host {
    host(misbehave_config())
}

fn misbehave_config() -> HostConfig {
    HostConfig {
        deadline: Duration::from_millis(200),
        memory_limit: 32 << 20,
        max_instances: 8,
    }
}

/// Runs a misbehaving command, checks the instance is poisoned after it and that a fresh
/// instance of the same module still serves `ok`.
async fn misbehave(module: &Module, command: &str) -> Error {
    let mut instance: Instance = module.instantiate().await.unwrap();
    let error = match instance.handle(&ctx(command, 0), None, "null").await {
        Err(e) => e,
        Ok(answer) => panic!("{command} answered {answer:?}"),
    };
    assert!(instance.is_poisoned());
    match instance.handle(&ctx("ok", 0), None, "null").await {
        Err(Error::Trap(m)) => assert!(m.contains("poisoned"), "{m}"),
        other => panic!("a poisoned instance answered {other:?}"),
    }
    drop(instance);
    let ok = run(module, "ok", None, "null").await;
    assert_eq!(ok.reply, "1");
    error
}

#[tokio::test]
async fn misbehave_trap_is_a_trap() {
    let host = misbehave_host();
    let module = load(&host, "misbehave").await;
    match misbehave(&module, "trap").await {
        Error::Trap(m) => assert!(
            m.contains("trap requested"),
            "guest output is attached: {m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(host.stats().traps, 1);
}

#[tokio::test]
async fn misbehave_spin_hits_the_deadline() {
    let host = misbehave_host();
    let module = load(&host, "misbehave").await;
    let started = Instant::now();
    let error = misbehave(&module, "spin").await;
    let elapsed = started.elapsed();
    assert_eq!(error, Error::DeadlineExceeded);
    assert!(
        elapsed >= Duration::from_millis(190),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "stopped too late: {elapsed:?}"
    );
    assert_eq!(host.stats().deadline_hits, 1);
}

#[tokio::test]
async fn misbehave_balloon_runs_out_of_memory() {
    // Committing 32 MiB page by page may take longer than the 200 ms deadline on a loaded
    // machine: this checks the memory limit, so the deadline is out of the way.
    let host = host(HostConfig {
        deadline: Duration::from_secs(30),
        ..misbehave_config()
    });
    let module = load(&host, "misbehave").await;
    match misbehave(&module, "balloon").await {
        Error::Trap(m) => assert!(m.contains("out of memory"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// On a single-threaded runtime, a guest that loops yields to other tasks between epoch ticks.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_stall_others() {
    let host = misbehave_host();
    let module = load(&host, "misbehave").await;
    let spinner = {
        let module = module.clone();
        tokio::spawn(async move {
            let mut instance = module.instantiate().await.unwrap();
            instance.handle(&ctx("spin", 0), None, "null").await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    for _ in 0..20 {
        run(&module, "ok", None, "null").await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        spinner.await.unwrap(),
        Err(Error::DeadlineExceeded)
    ));
}

/// A call running long pauses at its epoch ticks while other calls start (so it takes about
/// half of a worker from them), and never when it runs alone.
#[tokio::test(flavor = "current_thread")]
async fn a_long_call_is_paced_only_beside_other_calls() {
    let host = misbehave_host();
    let module = load(&host, "misbehave").await;
    let error = misbehave(&module, "spin").await;
    assert_eq!(error, Error::DeadlineExceeded);
    assert_eq!(host.stats().paced_pauses, 0, "alone, it is not paced");

    let spinner = {
        let module = module.clone();
        tokio::spawn(async move {
            let mut instance = module.instantiate().await.unwrap();
            instance.handle(&ctx("spin", 0), None, "null").await
        })
    };
    let mut others = 0;
    while !spinner.is_finished() {
        run(&module, "ok", None, "null").await;
        others += 1;
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        spinner.await.unwrap(),
        Err(Error::DeadlineExceeded)
    ));
    let paused = host.stats().paced_pauses;
    assert!(
        paused > 0,
        "{others} calls ran beside the spinning call, which never paused"
    );
}

#[tokio::test]
async fn precompiled_round_trip() {
    let host = small_host();
    let module = load(&host, "counter").await;
    let artifact = module.serialize().unwrap();

    let started = Instant::now();
    let again = host.load_precompiled(&artifact).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(again.descriptor(), module.descriptor());
    assert_eq!(run(&again, "add", None, "3").await.reply, "3");
    println!("load_precompiled: {elapsed:?}");

    // Another host with the same configuration accepts it too.
    assert!(small_host().load_precompiled(&artifact).await.is_ok());

    // Damage and foreign bytes are refused, so the caller can fall back to `load`.
    let mut damaged = artifact.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    for bad in [
        &damaged[..],
        &artifact[..artifact.len() / 2],
        &component("counter")[..],
        b"x",
    ] {
        assert!(matches!(
            host.load_precompiled(bad).await,
            Err(Error::InvalidComponent(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_instances_stay_within_the_pool() {
    const MAX: u32 = 16;
    let host = host(HostConfig {
        max_instances: MAX,
        ..HostConfig::default()
    });
    let module = load(&host, "counter").await;
    let peak = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (module, host, peak) = (module.clone(), host.clone(), peak.clone());
            tokio::spawn(async move {
                let mut instance = module.instantiate().await.expect("instantiate");
                peak.fetch_max(host.stats().instances_live, Ordering::Relaxed);
                tokio::task::yield_now().await;
                let reply = instance.handle(&ctx("add", 0), None, &i.to_string()).await;
                reply.expect("call").expect("outcome").reply
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), i.to_string());
    }
    let stats = host.stats();
    assert!(peak.load(Ordering::Relaxed) <= u64::from(MAX), "{stats:?}");
    assert_eq!(stats.instances_live, 0);
    assert_eq!(
        stats.instances_created, 201,
        "200 commands and one `describe` at load"
    );
    assert_eq!(stats.traps + stats.deadline_hits, 0);
}

#[tokio::test]
async fn a_module_knows_its_own_instances() {
    let host = small_host();
    let module = load(&host, "counter").await;
    let again = load(&host, "counter").await;
    assert!(module.is(&module.clone()));
    assert!(!module.is(&again), "two loads are two modules");
    let mut instance = module.instantiate().await.unwrap();
    assert!(instance.memory_bytes() > 0);
    // An instance serves call after call (the caller decides which calls share it).
    let first = instance.handle(&ctx("add", 0), None, "2").await.unwrap();
    let state = first
        .expect("add succeeds")
        .state
        .expect("add writes state");
    let second = instance.handle(&ctx("add", 1), Some(&state), "3").await;
    assert_eq!(second.unwrap().expect("add succeeds").reply, "5");
}
