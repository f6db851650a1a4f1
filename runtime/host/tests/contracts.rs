//! The host serves both contracts: a `cella:entity@0.2.0` component (the `counter` example,
//! built with the SDK) and a `cella:entity@0.1.0` one (the `v01-counter` test guest, written
//! with wit-bindgen against the frozen `wit/0.1.0/`), each through the bindings of its own
//! version. Components come from `target/components/` (`cargo xtask build-examples`) or
//! `CELLA_COMPONENTS_DIR`; a missing component fails the test, it is never skipped.

use std::path::PathBuf;

use cella_host::{CommandContext, Effect, Failure, Host, HostConfig, Module, Outcome};

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

fn host() -> Host {
    Host::new(HostConfig {
        max_instances: 8,
        ..HostConfig::default()
    })
    .expect("host")
}

/// A context with the 0.2.0 fields set, so that a 0.1.0 component shows it does without them.
fn ctx(command: &str) -> CommandContext {
    CommandContext {
        entity_type: "counter".into(),
        key: "k1".into(),
        command_id: "cmd-1".into(),
        command: command.into(),
        timestamp_ms: 1_700_000_000_000,
        random_seed: 42,
        sequence: 0,
        correlation: Some("corr-1".into()),
        timer: Some("tick".into()),
        message: None,
    }
}

async fn load(host: &Host, name: &str) -> Module {
    match host.load(&component(name)).await {
        Ok(module) => module,
        Err(e) => panic!("loading {name}: {e}"),
    }
}

async fn run(module: &Module, command: &str, state: Option<&[u8]>, payload: &str) -> Outcome {
    let mut instance = module.instantiate().await.expect("instantiate");
    match instance.handle(&ctx(command), state, payload).await {
        Ok(Ok(outcome)) => outcome,
        other => panic!("{command} {payload}: {other:?}"),
    }
}

#[tokio::test]
async fn a_0_2_component_is_served_as_0_2() {
    let host = host();
    let module = load(&host, "counter").await;
    assert_eq!(module.contract(), "0.2.0");
    assert!(format!("{module:?}").contains("0.2.0"));
    let first = run(&module, "add", None, "5").await;
    assert_eq!(first.reply, "5");
    let state = first.state.expect("add writes the state");
    assert_eq!(run(&module, "get", Some(&state), "null").await.reply, "5");
    for other in ["misbehave", "shopping-cart"] {
        assert_eq!(load(&host, other).await.contract(), "0.2.0", "{other}");
    }
}

#[tokio::test]
async fn a_0_1_component_is_served_as_0_1() {
    let host = host();
    let module = load(&host, "v01-counter").await;
    assert_eq!(module.contract(), "0.1.0");
    assert_eq!(module.descriptor().commands, ["add", "get"]);

    let first = run(&module, "add", None, "5").await;
    assert_eq!(first.reply, "5");
    assert!(first.effects.is_empty() && first.forward.is_none());
    let state = first.state.expect("add writes the state");
    assert_eq!(state, br#"{"total":5}"#);

    let second = run(&module, "add", Some(&state), "-7").await;
    assert_eq!(second.reply, "-2");
    let state = second.state.expect("add writes the state");
    let read = run(&module, "get", Some(&state), "null").await;
    assert_eq!((read.reply.as_str(), read.state), ("-2", None));

    let mut instance = module.instantiate().await.expect("instantiate");
    assert_eq!(
        instance.render_state(&state).await.as_deref(),
        Ok(r#"{"total":-2}"#)
    );
    assert_eq!(
        instance.handle(&ctx("reset"), None, "null").await,
        Ok(Err(Failure::UnknownCommand("reset".into())))
    );
    assert!(matches!(
        instance.handle(&ctx("add"), None, "\"five\"").await,
        Ok(Err(Failure::BadRequest(_)))
    ));

    // No `fold` export (0.1.0 has none): a fold calls `apply` per event, whose answer is the
    // guest's; no events leave the state as it is.
    assert_eq!(
        instance.fold(Some(state.clone()), &[]).await,
        Ok(Some(state))
    );
    assert_eq!(
        instance.fold(None, &[b"{}".to_vec()]).await,
        Err(cella_host::Error::Guest(
            "a value entity has no events".into()
        ))
    );
}

#[tokio::test]
async fn a_0_1_schedule_effect_decodes_without_repetition() {
    let module = load(&host(), "v01-counter").await;
    let outcome = run(&module, "add", Some(br#"{"total":3}"#), "0").await;
    assert_eq!(outcome.reply, "3");
    assert_eq!(
        outcome.effects,
        [Effect::Schedule {
            name: "recheck".into(),
            delay_ms: 1000,
            command: "get".into(),
            payload: "null".into(),
            every_ms: None,
        }]
    );
}

#[tokio::test]
async fn both_contracts_share_one_host_and_precompile() {
    let host = host();
    for (name, contract) in [("v01-counter", "0.1.0"), ("counter", "0.2.0")] {
        let module = load(&host, name).await;
        let artifact = module.serialize().expect("serialize");
        let again = host
            .load_precompiled(&artifact)
            .await
            .expect("load_precompiled");
        assert_eq!(again.contract(), contract, "{name}");
        assert_eq!(run(&again, "add", None, "2").await.reply, "2", "{name}");
    }
}
