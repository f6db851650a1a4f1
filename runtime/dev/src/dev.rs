//! `cella dev`: the inner loop, for every guest language. Finds the project's [`Toolchain`]
//! once, builds the project, serves it from an embedded node (data in `<project>/.cella`),
//! watches its sources, and on every save rebuilds and deploys the new version in place, so
//! every entity keeps its state. Each reload prints one line: the version now serving, its
//! digest, how many entities were replayed into it, and the time from the file change to the
//! new code serving (with the build's and the deploy's share). A build that fails, a component
//! the node refuses, or a version that cannot take over the existing entities leaves the
//! previous version serving, and the reason is printed.
//!
//! What is watched is the toolchain's: the project directory's own files and the directories
//! [`Toolchain::watch_dirs`] names (recursively), filtered by [`Toolchain::is_source`] and
//! without editors' swap and backup files. Directories made while the loop runs are watched
//! from the next reload on.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use cella_node::{Node, NodeHandle, NodeOptions};

use crate::{
    error::{Error, Result},
    toolchain::{self, Toolchain},
};

/// Quiet time after a change before rebuilding, so that a burst of writes builds once.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of changes may postpone a rebuild.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// What `cella dev` was asked to do.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// The entity project (a Rust crate, a Python or a JavaScript project).
    pub dir: PathBuf,
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// Entity type to deploy as (default: the project's name, see
    /// [`Toolchain::default_type`]).
    pub name: Option<String>,
}

/// Runs the loop until Ctrl-C or SIGTERM.
pub async fn run_dev(options: DevOptions) -> Result<()> {
    // Installed first, so that a signal while the node starts stops it cleanly.
    let signal = cella_node::node::shutdown_signal();
    let dir = std::fs::canonicalize(&options.dir).map_err(|e| {
        Error::io(
            format_args!("cannot open {}", options.dir.display()),
            e,
            "run `cella dev` in an entity project, or make one with `cella new NAME`".into(),
        )
    })?;
    let toolchain = toolchain::detect(&dir)?;
    let entity_type = match options.name {
        Some(name) => name,
        None => toolchain.default_type(&dir)?,
    };
    cella_core::validate_name("entity type", &entity_type).map_err(|e| Error::Name {
        message: format!("cannot deploy as `{entity_type}`"),
        hint: "choose another entity type with --name TYPE".into(),
        source: Some(e),
    })?;

    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let mut sources = Sources::watch(&dir, toolchain, changes_tx)?;

    let data_dir = dir.join(".cella");
    let handle = Node::start(NodeOptions::new(data_dir.clone(), options.listen))
        .await
        .map_err(|e| Error::Node {
            message: "cannot start the node".to_string(),
            hint: format!(
                "is another `cella dev` or `cella serve` using {} or {}? Use --listen ADDR for \
                 another address",
                data_dir.display(),
                options.listen
            )
            .into(),
            source: e,
        })?;
    println!(
        "cella listening on http://{} (data in {})",
        handle.addr,
        data_dir.display()
    );
    println!(
        "watching {} in {} ({}) for `{entity_type}` (Ctrl-C to stop)",
        toolchain.sources(),
        dir.display(),
        toolchain.lang().name(),
    );

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });

    let mut dev = Dev {
        handle,
        dir,
        toolchain,
        entity_type,
        first: true,
    };
    dev.report_resumed();
    let mut changed_at = Instant::now();
    loop {
        if !dev.reload(changed_at, &mut stop).await {
            break;
        }
        if let Err(e) = sources.refresh() {
            println!("cannot watch every source directory:");
            print_indented(&crate::render(&e));
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

/// The watched sources of a project: a watcher on the project directory (its own files) and
/// on each of the toolchain's directories (recursively), sending the time of every change
/// that [`is_relevant`].
struct Sources {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    toolchain: &'static dyn Toolchain,
    /// The directories watched recursively.
    watched: BTreeSet<PathBuf>,
}

impl Sources {
    /// Starts watching. The project directory is watched rather than its files, so that
    /// editors which save by replacing a file are seen too.
    fn watch(
        dir: &Path,
        toolchain: &'static dyn Toolchain,
        changes: mpsc::UnboundedSender<Instant>,
    ) -> Result<Sources> {
        let root = dir.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_relevant(&event, &root, toolchain) => {
                    let _ = changes.send(Instant::now());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("watching the sources failed: {e}"),
            })
            .map_err(|e| Error::Watch {
                message: "cannot watch the sources for changes".to_string(),
                source: e,
            })?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| cannot_watch(dir, e))?;
        let mut sources = Sources {
            watcher,
            dir: dir.to_path_buf(),
            toolchain,
            watched: BTreeSet::new(),
        };
        sources.refresh()?;
        Ok(sources)
    }

    /// Watches the toolchain's directories not watched yet (made since the last call), and
    /// forgets those that are gone.
    fn refresh(&mut self) -> Result<()> {
        let dirs: BTreeSet<PathBuf> = self.toolchain.watch_dirs(&self.dir)?.into_iter().collect();
        for gone in self.watched.difference(&dirs) {
            // Removing a directory removes its watch too; this only tidies up.
            let _ = self.watcher.unwatch(gone);
        }
        self.watched.retain(|d| dirs.contains(d));
        for dir in dirs {
            if !self.watched.contains(&dir) {
                self.watcher
                    .watch(&dir, RecursiveMode::Recursive)
                    .map_err(|e| cannot_watch(&dir, e))?;
                self.watched.insert(dir);
            }
        }
        Ok(())
    }
}

fn cannot_watch(dir: &Path, e: notify::Error) -> Error {
    Error::Watch {
        message: format!("cannot watch {}", dir.display()),
        source: e,
    }
}

/// Whether a file-system event is a change to the sources of the project in `dir` (not a
/// read, not an editor's swap or backup file, not the build's own output).
fn is_relevant(event: &notify::Event, dir: &Path, toolchain: &dyn Toolchain) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        path.strip_prefix(dir)
            .is_ok_and(|relative| !is_editor_file(relative) && toolchain.is_source(relative))
    })
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
    toolchain: &'static dyn Toolchain,
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
            built = self.toolchain.build(&self.dir) => built,
            _ = stop.wait_for(|stopped| *stopped) => return false,
        };
        let wasm = match built {
            Ok(wasm) => wasm,
            Err(Error::Build {
                status, summary, ..
            }) => {
                println!(
                    "reload failed: the build failed ({status}); {}",
                    self.keeps_serving()
                );
                print_indented(&summary);
                return true;
            }
            Err(e) => {
                println!("reload failed: {}", self.keeps_serving());
                print_indented(&crate::render(&e));
                return true;
            }
        };
        let bytes = match std::fs::read(&wasm) {
            Ok(bytes) => bytes,
            Err(e) => {
                println!(
                    "reload failed: cannot read {}: {e}; {}",
                    wasm.display(),
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
            .deploy(&self.entity_type, &bytes, "cella dev")
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
                print_indented(&crate::render(&e));
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
    use crate::Lang;

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn relevant_changes() {
        let dir = Path::new("/c");
        let modify = EventKind::Modify(notify::event::ModifyKind::Any);
        let read = EventKind::Access(notify::event::AccessKind::Any);
        let rust = Lang::Rust.toolchain();
        for (path, relevant) in [
            ("/c/src/lib.rs", true),
            ("/c/src/a/b.rs", true),
            ("/c/Cargo.toml", true),
            ("/c/Cargo.lock", false),
            ("/c/target/x", false),
            ("/c/src/.lib.rs.swp", false),
            ("/c/src/lib.rs~", false),
            ("/elsewhere/src/lib.rs", false),
        ] {
            assert_eq!(
                is_relevant(&event(modify, path), dir, rust),
                relevant,
                "{path}"
            );
        }
        assert!(!is_relevant(&event(read, "/c/src/lib.rs"), dir, rust));

        let python = Lang::Python.toolchain();
        assert!(is_relevant(&event(modify, "/c/app.py"), dir, python));
        assert!(!is_relevant(&event(modify, "/c/app.py~"), dir, python));
        assert!(!is_relevant(&event(modify, "/c/.cella/x.py"), dir, python));
        let js = Lang::Js.toolchain();
        assert!(is_relevant(&event(modify, "/c/src/index.js"), dir, js));
        assert!(!is_relevant(
            &event(modify, "/c/node_modules/a.js"),
            dir,
            js
        ));
    }

    #[tokio::test]
    async fn new_source_directories_are_watched_from_the_next_refresh() {
        let work = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(work.path()).unwrap();
        std::fs::write(dir.join("app.py"), "").unwrap();
        let (tx, mut changes) = mpsc::unbounded_channel();
        let mut sources = Sources::watch(&dir, Lang::Python.toolchain(), tx).unwrap();
        assert!(sources.watched.is_empty());

        std::fs::write(dir.join("app.py"), "x = 1\n").unwrap();
        tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .unwrap()
            .unwrap();

        std::fs::create_dir(dir.join("helpers")).unwrap();
        std::fs::create_dir(dir.join("target")).unwrap();
        sources.refresh().unwrap();
        assert_eq!(
            sources.watched.iter().collect::<Vec<_>>(),
            [&dir.join("helpers")]
        );
        while changes.try_recv().is_ok() {}
        std::fs::write(dir.join("target/out.py"), "").unwrap();
        std::fs::write(dir.join("helpers/money.py"), "").unwrap();
        tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .unwrap()
            .unwrap();

        std::fs::remove_dir_all(dir.join("helpers")).unwrap();
        sources.refresh().unwrap();
        assert!(sources.watched.is_empty());
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
