//! Module metadata, component blobs and the artifact cache, plus the golden encoding of
//! `ModuleInfo` as stored in the `modules` table.

mod common;

use cella_core::{EntityKind, Journal, ModuleInfo, ModuleVersion, encode};
use cella_store::{Error, Store};
use common::{append, id, open};

/// Deploys the next version of `entity_type`, as the server does.
fn deploy(
    store: &Store,
    entity_type: &str,
    digest: &str,
    component: &[u8],
) -> Result<ModuleInfo, Error> {
    let mut v = version(digest, component.len() as u64);
    v.version = store.next_module_version(entity_type)?;
    store.put_module_version(entity_type, v, component)
}

fn version(digest: &str, size: u64) -> ModuleVersion {
    ModuleVersion {
        version: 0,
        digest: format!("sha256:{digest}"),
        size,
        created_ms: 1_700_000_000_000,
        kind: EntityKind::EventSourced,
        commands: vec!["add".into(), "get".into()],
    }
}

#[test]
fn versions_activation_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.modules().unwrap(), Vec::new());
    assert_eq!(store.module("counter").unwrap(), None);
    assert_eq!(store.next_module_version("counter").unwrap(), 1);

    let info = deploy(&store, "counter", "aa", b"v-1").unwrap();
    assert_eq!(info.entity_type, "counter");
    assert_eq!(info.active, 1);
    assert_eq!(info.versions.len(), 1);
    assert_eq!(info.versions[0].version, 1);
    assert_eq!(info.versions[0].digest, "sha256:aa");

    // Only the next version number is accepted.
    assert_eq!(store.next_module_version("counter").unwrap(), 2);
    for wrong in [0, 1, 3, 77] {
        let v = ModuleVersion {
            version: wrong,
            ..version("bb", 3)
        };
        let err = store.put_module_version("counter", v, b"v-2").unwrap_err();
        assert!(
            matches!(err, Error::VersionConflict { expected: 2, found, .. } if found == wrong),
            "{err}"
        );
    }
    let v2 = ModuleVersion {
        version: 2,
        ..version("bb", 3)
    };
    let info = store.put_module_version("counter", v2, b"v-2").unwrap();
    assert_eq!(info.active, 2);
    assert_eq!(
        info.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(info.active_version().unwrap().digest, "sha256:bb");
    assert_eq!(store.module("counter").unwrap(), Some(info.clone()));

    deploy(&store, "cart", "cc", b"cart").unwrap();
    let names: Vec<String> = store
        .modules()
        .unwrap()
        .into_iter()
        .map(|m| m.entity_type)
        .collect();
    assert_eq!(names, vec!["cart", "counter"]);

    assert_eq!(
        store.module_bytes("counter", 1).unwrap().as_deref(),
        Some(&b"v-1"[..])
    );
    assert_eq!(
        store.module_bytes("counter", 2).unwrap().as_deref(),
        Some(&b"v-2"[..])
    );
    assert_eq!(store.module_bytes("counter", 3).unwrap(), None);
    assert_eq!(store.module_bytes("nope", 1).unwrap(), None);

    // Rollback and roll-forward.
    assert_eq!(store.set_active_version("counter", 1).unwrap().active, 1);
    assert_eq!(store.module("counter").unwrap().unwrap().active, 1);
    assert_eq!(store.set_active_version("counter", 2).unwrap().active, 2);
    assert!(matches!(
        store.set_active_version("counter", 9),
        Err(Error::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        store.set_active_version("nope", 1),
        Err(Error::UnknownModule(_))
    ));
    assert_eq!(store.module("counter").unwrap().unwrap().active, 2);
}

#[test]
fn rejects_invalid_entity_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for bad in ["", "a/b", "tab\there"] {
        let err = store
            .put_module_version(bad, version("aa", 1), b"x")
            .unwrap_err();
        assert!(
            matches!(err, Error::Core(cella_core::Error::InvalidName { .. })),
            "{err}"
        );
    }
    assert!(store.modules().unwrap().is_empty());
}

#[test]
fn artifacts_are_stored_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        store.put_artifact("counter", 1, b"x"),
        Err(Error::UnknownModule(_))
    ));
    deploy(&store, "counter", "aa", b"wasm").unwrap();
    assert!(matches!(
        store.put_artifact("counter", 2, b"x"),
        Err(Error::UnknownVersion { version: 2, .. })
    ));
    assert_eq!(store.get_artifact("counter", 1).unwrap(), None);
    store.put_artifact("counter", 1, b"native-1").unwrap();
    assert_eq!(
        store.get_artifact("counter", 1).unwrap().as_deref(),
        Some(&b"native-1"[..])
    );
    store.put_artifact("counter", 1, b"native-1b").unwrap();
    assert_eq!(
        store.get_artifact("counter", 1).unwrap().as_deref(),
        Some(&b"native-1b"[..])
    );
    assert!(store.delete_artifact("counter", 1).unwrap());
    assert!(!store.delete_artifact("counter", 1).unwrap());
    assert_eq!(store.get_artifact("counter", 1).unwrap(), None);
}

#[tokio::test]
async fn delete_module_keeps_journals_and_never_reuses_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    deploy(&store, "counter", "aa", b"v-1").unwrap();
    deploy(&store, "counter", "bb", b"v-2").unwrap();
    deploy(&store, "counter-x", "dd", b"other").unwrap();
    store.put_artifact("counter", 1, b"n-1").unwrap();
    store.put_artifact("counter", 2, b"n-2").unwrap();
    store.put_artifact("counter-x", 1, b"n-x").unwrap();
    store.append(vec![append("c1", 1)]).await.unwrap();

    assert!(store.delete_module("counter").unwrap());
    assert!(!store.delete_module("counter").unwrap());
    assert_eq!(store.module("counter").unwrap(), None);
    for v in [1, 2] {
        assert_eq!(store.module_bytes("counter", v).unwrap(), None);
        assert_eq!(store.get_artifact("counter", v).unwrap(), None);
    }
    // Other modules, and the entity journals of the deleted type, stay.
    assert_eq!(
        store.module_bytes("counter-x", 1).unwrap().as_deref(),
        Some(&b"other"[..])
    );
    assert_eq!(
        store.get_artifact("counter-x", 1).unwrap().as_deref(),
        Some(&b"n-x"[..])
    );
    assert_eq!(store.load(&id("c1")).unwrap().last_seq(), 1);

    // A re-created module continues the numbering.
    assert_eq!(store.next_module_version("counter").unwrap(), 3);
    let info = deploy(&store, "counter", "ee", b"v-3").unwrap();
    assert_eq!(info.active, 3);
    assert_eq!(info.versions.len(), 1);
}

#[test]
fn modules_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        deploy(&store, "counter", "aa", b"v-1").unwrap();
        deploy(&store, "counter", "bb", b"v-2").unwrap();
        store.set_active_version("counter", 1).unwrap();
        store.put_artifact("counter", 2, b"native").unwrap();
    }
    let store = open(dir.path());
    let info = store.module("counter").unwrap().unwrap();
    assert_eq!(info.active, 1);
    assert_eq!(info.versions.len(), 2);
    assert_eq!(
        store.module_bytes("counter", 2).unwrap().as_deref(),
        Some(&b"v-2"[..])
    );
    assert_eq!(
        store.get_artifact("counter", 2).unwrap().as_deref(),
        Some(&b"native"[..])
    );
    assert_eq!(deploy(&store, "counter", "cc", b"v-3").unwrap().active, 3);
}

/// Golden bytes of a `modules` table value: if this fails, the on-disk format changed and
/// `cella_core::FORMAT_VERSION` must move.
#[test]
fn golden_module_info() {
    let info = ModuleInfo {
        entity_type: "counter".into(),
        active: 2,
        versions: vec![
            ModuleVersion {
                version: 1,
                ..version("ab", 300)
            },
            ModuleVersion {
                version: 2,
                kind: EntityKind::Value,
                ..version("cd", 5)
            },
        ],
    };
    let hex: String = encode(&info)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, GOLDEN_MODULE_INFO);
}

const GOLDEN_MODULE_INFO: &str = "0107636f756e746572020201097368613235363a6162ac0280d095ffbc310102036164640367657402097368613235363a63640580d095ffbc3100020361646403676574";

#[test]
fn limits_are_a_row_of_their_own_kept_across_reopen_and_dropped_with_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let limits = cella_core::TypeLimits {
        deadline_ms: Some(200),
        max_concurrent: Some(1),
        cpu_share: None,
    };
    {
        let store = open(dir.path());
        assert_eq!(store.module_limits("spin").unwrap(), Default::default());
        let before = deploy(&store, "spin", "aa", b"wasm").unwrap();
        store.put_module_limits("spin", &limits).unwrap();
        // The module's own record is unchanged by its limits.
        assert_eq!(store.module("spin").unwrap(), Some(before));
    }
    let store = open(dir.path());
    assert_eq!(store.module_limits("spin").unwrap(), limits);
    store
        .put_module_limits("spin", &Default::default())
        .unwrap();
    assert_eq!(store.module_limits("spin").unwrap(), Default::default());
    store.put_module_limits("spin", &limits).unwrap();
    assert!(store.delete_module("spin").unwrap());
    assert_eq!(store.module_limits("spin").unwrap(), Default::default());
}
