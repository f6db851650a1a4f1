//! `cella dev`: the inner loop. Builds the entity crate, serves it from an embedded node (data
//! in `<crate>/.cella`), watches `src/` and `Cargo.toml`, and on every save rebuilds and deploys
//! the new version in place. Each reload prints one line: the version now serving, its digest,
//! how many entities were replayed into it, and the time from the file change to the new code
//! serving. A build that fails, a component the node refuses, or a version that cannot take
//! over the existing entities leaves the previous version serving, and the reason is printed.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use cella_node::{Node, NodeHandle, NodeOptions};

use crate::guest_build::{self, BuildError};

/// Quiet time after a change before rebuilding, so that a burst of writes builds once.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of changes may postpone a rebuild.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// What `cella dev` was asked to do.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// The entity crate.
    pub dir: PathBuf,
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// Entity type to deploy as (default: the package name).
    pub name: Option<String>,
}

/// Runs the loop until Ctrl-C or SIGTERM.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&options.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {}: {e}\nhint: run `cella dev` in an entity crate, or make one with \
             `cella new NAME`",
            options.dir.display()
        )
    })?;
    let manifest = dir.join("Cargo.toml");
    let package = guest_build::package_name(&manifest)?;
    let entity_type = options.name.unwrap_or(package);
    cella_core::validate_name("entity type", &entity_type)
        .map_err(|e| anyhow::anyhow!("{e}\nhint: choose another entity type with --name TYPE"))?;
    let src = dir.join("src");
    if !src.is_dir() {
        bail!(
            "{} has no src/ directory\nhint: run `cella dev` in an entity crate, or make one \
             with `cella new NAME`",
            dir.display()
        );
    }

    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let _watcher = watch_sources(&dir, &src, &manifest, changes_tx)?;

    let data_dir = dir.join(".cella");
    let handle = Node::start(NodeOptions::new(data_dir.clone(), options.listen))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the node: {e}\nhint: is another `cella dev` or `cella serve` \
                 using {} or {}? Use --listen ADDR for another address",
                data_dir.display(),
                options.listen
            )
        })?;
    println!(
        "cella listening on http://{} (data in {})",
        handle.addr,
        data_dir.display()
    );
    println!(
        "watching {} and {} for `{entity_type}` (Ctrl-C to stop)",
        src.display(),
        manifest.display()
    );

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        cella_node::node::wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    let mut dev = Dev {
        handle,
        dir,
        entity_type,
        first: true,
    };
    dev.report_resumed();
    let mut changed_at = Instant::now();
    loop {
        if !dev.reload(changed_at, &mut stop).await {
            break;
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            change = changes.recv() => match change {
                Some(at) => changed_at = at,
                None => break,
            },
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = debounce(&mut changes) => {}
        }
    }
    eprintln!("shutting down: finishing in-flight requests");
    dev.handle.shutdown().await;
    Ok(())
}

/// Watches `src/` (recursively) and the manifest, sending the time of every relevant change.
/// The crate directory is watched rather than `Cargo.toml` itself, so that editors which save
/// by replacing the file are seen too.
fn watch_sources(
    dir: &Path,
    src: &Path,
    manifest: &Path,
    changes: mpsc::UnboundedSender<Instant>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (src_path, manifest_path) = (src.to_path_buf(), manifest.to_path_buf());
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_relevant(&event, &src_path, &manifest_path) => {
                let _ = changes.send(Instant::now());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the sources failed: {e}"),
        })
        .context("cannot watch the sources for changes")?;
    watcher
        .watch(src, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", src.display()))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

/// Whether a file-system event is a change to the sources (not a read, not an editor's
/// swap or backup file, not the build's own output).
fn is_relevant(event: &notify::Event, src: &Path, manifest: &Path) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event
        .paths
        .iter()
        .any(|path| path == manifest || (path.starts_with(src) && !is_editor_file(path)))
}

fn is_editor_file(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.starts_with(".#")
        || name == "4913"
}

/// Waits until no change arrived for [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`]).
async fn debounce(changes: &mut mpsc::UnboundedReceiver<Instant>) {
    let until = Instant::now() + DEBOUNCE_MAX;
    while Instant::now() < until {
        match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
}

/// The running loop's state.
struct Dev {
    handle: NodeHandle,
    dir: PathBuf,
    entity_type: String,
    /// Whether no build has been deployed by this run yet.
    first: bool,
}

fn short_digest(digest: &str) -> &str {
    let end = digest
        .char_indices()
        .nth("sha256:".len() + 12)
        .map_or(digest.len(), |(i, _)| i);
    &digest[..end]
}

impl Dev {
    /// `TYPE vN` of the active version, if any.
    fn serving(&self) -> Option<String> {
        let active = self.handle.node.registry.get(&self.entity_type).ok()?;
        Some(format!("{} v{}", self.entity_type, active.version))
    }

    fn keeps_serving(&self) -> String {
        match self.serving() {
            Some(active) => format!("{active} keeps serving"),
            None => format!("nothing serves `{}` yet", self.entity_type),
        }
    }

    /// Says which version the data directory already serves, when it is not empty.
    fn report_resumed(&self) {
        if let Ok(active) = self.handle.node.registry.get(&self.entity_type) {
            println!(
                "resuming: {} v{} ({}) from the data directory serves until the build is done",
                self.entity_type,
                active.version,
                short_digest(&active.digest)
            );
        }
    }

    /// Builds and deploys. Returns false when stopped by a signal during the build.
    async fn reload(&mut self, changed_at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
        let before = self
            .handle
            .node
            .registry
            .get(&self.entity_type)
            .ok()
            .map(|a| a.module.descriptor().commands.clone());
        let build_started = Instant::now();
        let built = tokio::select! {
            built = guest_build::build(&self.dir) => built,
            _ = stop.wait_for(|stopped| *stopped) => return false,
        };
        let built = match built {
            Ok(built) => built,
            Err(BuildError::Compile { status, summary }) => {
                println!(
                    "reload failed: the build failed ({status}); {}",
                    self.keeps_serving()
                );
                print_indented(&summary);
                return true;
            }
            Err(BuildError::Other(e)) => {
                println!("reload failed: {}", self.keeps_serving());
                print_indented(&format!("{e:#}"));
                return true;
            }
        };
        let bytes = match std::fs::read(&built.wasm) {
            Ok(bytes) => bytes,
            Err(e) => {
                println!(
                    "reload failed: cannot read {}: {e}; {}",
                    built.wasm.display(),
                    self.keeps_serving()
                );
                return true;
            }
        };
        let deploy_started = Instant::now();
        let build_ms = (deploy_started - build_started).as_millis();
        let deployed = self
            .handle
            .node
            .registry
            .deploy(&self.entity_type, &bytes)
            .await;
        let deploy_ms = deploy_started.elapsed().as_millis();
        let ms = changed_at.elapsed().as_millis();
        let deployed = match deployed {
            Ok(deployed) => deployed,
            Err(e) => {
                println!(
                    "reload refused: the node did not take the new version; {}",
                    self.keeps_serving()
                );
                print_indented(&e.to_string());
                return true;
            }
        };
        let meta = &deployed.version;
        let first = std::mem::replace(&mut self.first, false);
        let verb = if first { "deployed" } else { "reloaded" };
        if !deployed.created {
            println!(
                "up to date: the build is identical to {} v{} ({}), which keeps serving \
                 ({ms} ms)",
                self.entity_type,
                meta.version,
                short_digest(&meta.digest)
            );
        } else {
            println!(
                "{verb}: {} v{} ({}), {} replayed, serving {ms} ms after the change (build \
                 {build_ms} ms, deploy {deploy_ms} ms)",
                self.entity_type,
                meta.version,
                short_digest(&meta.digest),
                plural(deployed.replayed, "entity", "entities")
            );
        }
        if first {
            for warning in &deployed.warnings {
                println!("  warning: {warning}");
            }
        }
        if first || before.as_ref() != Some(&meta.commands) {
            println!(
                "  {} entity; commands: {}; e.g. curl -X POST http://{}/v1/entities/{}/KEY/{} \
                 -d 'JSON'",
                meta.kind.as_str(),
                meta.commands.join(", "),
                self.handle.addr,
                cella_node::http::encode_segment(&self.entity_type),
                meta.commands.first().map_or("COMMAND", String::as_str)
            );
        }
        true
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevant_changes() {
        let src = Path::new("/c/src");
        let manifest = Path::new("/c/Cargo.toml");
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        assert!(is_relevant(&event(modify, "/c/src/lib.rs"), src, manifest));
        assert!(is_relevant(&event(modify, "/c/src/a/b.rs"), src, manifest));
        assert!(is_relevant(&event(modify, "/c/Cargo.toml"), src, manifest));
        assert!(!is_relevant(&event(modify, "/c/Cargo.lock"), src, manifest));
        assert!(!is_relevant(&event(modify, "/c/target/x"), src, manifest));
        assert!(!is_relevant(
            &event(modify, "/c/src/.lib.rs.swp"),
            src,
            manifest
        ));
        assert!(!is_relevant(
            &event(modify, "/c/src/lib.rs~"),
            src,
            manifest
        ));
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!is_relevant(&event(read, "/c/src/lib.rs"), src, manifest));
    }

    #[test]
    fn short_digests() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("sha256:01"), "sha256:01");
    }
}
