//! Turning component bytes into loaded [`Module`]s for the registry ([`Loader`]): compiling, in a
//! child process or in this one, and keeping each compiled artifact as a file that is mapped
//! rather than copied.
//!
//! *Out of process.* Compiling a large component (an interpreter: CPython, SpiderMonkey) makes
//! hundreds of MB of short-lived allocations on wasmtime's compilation threads, which the
//! allocator keeps after they are freed. With a [`Loader::compiler`] executable (the `cella`
//! binary itself, which `cella serve` passes), the node runs `EXE __compile` with its host
//! configuration as arguments ([`child_args`]), writes the component to its stdin and reads the
//! artifact from its stdout; the child ([`run_child`]) builds a [`Host`] with the same
//! configuration (the engine refuses artifacts made with other settings), loads the component
//! (capability check, compilation, `describe`) and answers the artifact followed by the tag byte
//! [`OK`], or a message followed by [`INVALID`] or [`FAILED`] (a trailing tag, so that the
//! parent takes it off without moving the artifact). The child is killed when the request is
//! dropped or after [`COMPILE_TIMEOUT`], and reaped by tokio. Library users without a compiler
//! compile in-process, as before.
//!
//! *Files.* Each artifact is also written to `<artifacts>/<type hash>/<digest>.cwasm` (see
//! [`cella_host::write_artifact_file`] for the file and its sidecar) and loaded from there with
//! [`Host::load_precompiled_file`], so its machine code is file-backed memory. The directory of
//! a type is named by a hash of the type's name (type names may hold any character but `/`)
//! and the file by the component's digest, which is known before the version number and names
//! the same code whatever version carries it. Deleting a type removes its directory. Any failure
//! with files falls back to the artifact in the store, then to compiling.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

/// The host configuration a compiler child is given (the node's).
pub use cella_host::HostConfig;
use cella_host::{Host, Module};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The hidden subcommand of the `cella` binary that compiles a component.
pub const SUBCOMMAND: &str = "__compile";
/// The longest a child may take to compile one component.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(600);

/// The child's answer ends with one of these bytes.
pub const OK: u8 = 0;
/// The component is invalid; the rest is the message.
pub const INVALID: u8 = 1;
/// The host failed; the rest is the message.
pub const FAILED: u8 = 2;

/// The arguments after [`SUBCOMMAND`] that give a child `config`; `cella __compile` parses them
/// back (its flags have these names).
pub fn child_args(config: &HostConfig) -> Vec<String> {
    vec![
        "--deadline-ns".into(),
        config.deadline.as_nanos().to_string(),
        "--memory-limit".into(),
        config.memory_limit.to_string(),
        "--max-instances".into(),
        config.max_instances.to_string(),
    ]
}

/// The child's side: reads a component from stdin, loads it with a host of `config` and writes
/// the tagged answer to stdout. Fails only when stdin or stdout fail.
pub async fn run_child(config: HostConfig) -> std::io::Result<()> {
    let mut wasm = Vec::new();
    std::io::stdin().lock().read_to_end(&mut wasm)?;
    let answer = match compile_here(config, &wasm).await {
        Ok(artifact) => (OK, artifact),
        Err(cella_host::Error::InvalidComponent(m)) => (INVALID, m.into_bytes()),
        Err(other) => (FAILED, other.to_string().into_bytes()),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&answer.1)?;
    out.write_all(&[answer.0])?;
    out.flush()
}

async fn compile_here(config: HostConfig, wasm: &[u8]) -> Result<Vec<u8>, cella_host::Error> {
    Host::new(config)?.load(wasm).await?.serialize()
}

/// Compiles components and loads artifacts for the registry.
pub struct Loader {
    host: Host,
    /// The executable that compiles (`EXE __compile`); `None`: compile in this process.
    compiler: Option<PathBuf>,
    /// Where artifact files go; `None`: keep artifacts in the store only.
    artifacts: Option<PathBuf>,
}

/// A freshly compiled component.
pub struct Compiled {
    pub module: Module,
    /// Its artifact (for the store), when it could be serialized.
    pub artifact: Option<Vec<u8>>,
}

impl Loader {
    pub fn new(host: Host, compiler: Option<PathBuf>, artifacts: Option<PathBuf>) -> Loader {
        Loader {
            host,
            compiler,
            artifacts,
        }
    }

    /// The host modules are loaded into.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Compiles and validates `wasm` — in the compiler process when there is one — and loads
    /// it; with `file` (the type and the component's digest), from its artifact file.
    pub async fn compile(
        &self,
        wasm: &[u8],
        file: Option<(&str, &str)>,
    ) -> Result<Compiled, cella_host::Error> {
        let Some(exe) = &self.compiler else {
            return self.compile_here(wasm, file).await;
        };
        let artifact = match compile_in_child(exe, self.host.config(), wasm).await {
            Ok(artifact) => artifact,
            Err(Spawn(e)) => {
                tracing::warn!("compiling in this process: {e}");
                return self.compile_here(wasm, file).await;
            }
            Err(Compile(e)) => return Err(e),
        };
        if let Some((entity_type, digest)) = file
            && let Some(module) = self.write_and_load(entity_type, digest, &artifact).await
        {
            return Ok(Compiled {
                module,
                artifact: Some(artifact),
            });
        }
        match self.host.load_precompiled(&artifact).await {
            Ok(module) => Ok(Compiled {
                module,
                artifact: Some(artifact),
            }),
            Err(e) => {
                // The executable on disk is not this program any more (replaced by an upgrade).
                tracing::warn!("the compiler's artifact does not fit: {e}; compiling here");
                self.compile_here(wasm, file).await
            }
        }
    }

    /// Compiles in this process; the artifact file is written for the next start (this
    /// process already holds the code).
    async fn compile_here(
        &self,
        wasm: &[u8],
        file: Option<(&str, &str)>,
    ) -> Result<Compiled, cella_host::Error> {
        let module = self.host.load(wasm).await?;
        let artifact = module.serialize().ok();
        if let (Some((entity_type, digest)), Some(artifact)) = (file, &artifact) {
            self.write_file(entity_type, digest, artifact);
        }
        Ok(Compiled { module, artifact })
    }

    /// Loads the artifact file of `digest` for `entity_type`, if there is a usable one.
    pub async fn load_file(&self, entity_type: &str, digest: &str) -> Option<Module> {
        let path = self.file_path(entity_type, digest)?;
        if !path.exists() {
            return None;
        }
        match self.host.load_precompiled_file(&path).await {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!("artifact file {} is not usable: {e}", path.display());
                None
            }
        }
    }

    /// Loads a stored artifact: through its file (written first) when files are kept, else
    /// from the bytes.
    pub async fn load_artifact(
        &self,
        entity_type: &str,
        digest: &str,
        artifact: &[u8],
    ) -> Result<Module, cella_host::Error> {
        if let Some(module) = self.write_and_load(entity_type, digest, artifact).await {
            return Ok(module);
        }
        self.host.load_precompiled(artifact).await
    }

    /// Removes the artifact file of `digest` for `entity_type` (a refused version's), and the
    /// type's directory if that leaves it empty.
    pub fn remove_file(&self, entity_type: &str, digest: &str) {
        if let Some(path) = self.file_path(entity_type, digest) {
            cella_host::remove_artifact_file(&path);
            if let Some(dir) = path.parent() {
                // Fails, as it should, while other files are in it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Removes the artifact files of `entity_type`.
    pub fn remove_type(&self, entity_type: &str) {
        if let Some(dir) = self.type_dir(entity_type)
            && dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!("cannot remove the artifact files in {}: {e}", dir.display());
        }
    }

    async fn write_and_load(
        &self,
        entity_type: &str,
        digest: &str,
        artifact: &[u8],
    ) -> Option<Module> {
        let path = self.write_file(entity_type, digest, artifact)?;
        match self.host.load_precompiled_file(&path).await {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!("artifact file {} is not usable: {e}", path.display());
                cella_host::remove_artifact_file(&path);
                None
            }
        }
    }

    /// Writes the artifact file; its path, or `None` (logged) when it cannot be written.
    fn write_file(&self, entity_type: &str, digest: &str, artifact: &[u8]) -> Option<PathBuf> {
        let path = self.file_path(entity_type, digest)?;
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                cella_host::write_artifact_file(artifact, &path).map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!("cannot keep the artifact of `{entity_type}` as a file: {e}");
                None
            }
        }
    }

    fn type_dir(&self, entity_type: &str) -> Option<PathBuf> {
        let hash = hex::encode(Sha256::digest(entity_type.as_bytes()));
        Some(self.artifacts.as_ref()?.join(&hash[..32]))
    }

    fn file_path(&self, entity_type: &str, digest: &str) -> Option<PathBuf> {
        let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
        let name: String = digest
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(32)
            .collect();
        Some(self.type_dir(entity_type)?.join(format!("{name}.cwasm")))
    }
}

/// Why a child did not answer an artifact.
enum ChildError {
    /// It could not be started.
    Spawn(String),
    /// It failed, or said the component is invalid.
    Compile(cella_host::Error),
}
use ChildError::{Compile, Spawn};

/// Runs `exe __compile` on `wasm` and returns the artifact it answers.
async fn compile_in_child(
    exe: &Path,
    config: &HostConfig,
    wasm: &[u8],
) -> Result<Vec<u8>, ChildError> {
    let failed =
        |what: String| Compile(cella_host::Error::Internal(format!("the compiler {what}")));
    let mut child = tokio::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .args(child_args(config))
        .env("CELLA_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Spawn(format!("{} could not be started: {e}", exe.display())))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Spawn("the compiler has no stdin".into()))?;
    let feed = async move {
        // A child that fails early stops reading; its answer says why.
        let _ = stdin.write_all(wasm).await;
        drop(stdin);
    };
    // Dropping this future (the request went away, or the timeout) drops the child: killed.
    let run = async { tokio::join!(feed, child.wait_with_output()).1 };
    let output = tokio::time::timeout(COMPILE_TIMEOUT, run)
        .await
        .map_err(|_| {
            failed(format!(
                "did not finish within {} s",
                COMPILE_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| failed(format!("failed: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut stdout = output.stdout;
    let tag = stdout.pop();
    if !output.status.success() || tag.is_none() {
        return Err(failed(format!(
            "exited with {}: {}",
            output.status,
            stderr.trim()
        )));
    }
    match tag {
        Some(OK) => Ok(stdout),
        Some(INVALID) => Err(Compile(cella_host::Error::InvalidComponent(
            String::from_utf8_lossy(&stdout).into_owned(),
        ))),
        _ => Err(failed(format!(
            "failed: {}",
            String::from_utf8_lossy(&stdout)
        ))),
    }
}
