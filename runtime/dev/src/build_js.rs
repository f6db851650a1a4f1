//! JavaScript entities: `cella build` for a directory holding a `package.json` whose main module
//! exports the entity, and the `cella new` template for them.
//!
//! The JavaScript SDK (`sdk-guest/js`) and the WIT contract are embedded at compile time and
//! written out on demand to `$CELLA_HOME/sdk/<cella version>/`, next to the Rust and Python SDKs:
//!
//! - `js/cella-sdk/` — the `cella-sdk` package (its modules and `tools/componentize.mjs`, the
//!   build script); projects depend on it with `"cella-sdk": "file:<that directory>"`;
//! - `js/toolchain/` — the SDK's `package.json` and `package-lock.json`, from which the pinned
//!   build tools (componentize-js [`COMPONENTIZE_JS_VERSION`], esbuild [`ESBUILD_VERSION`]) are
//!   installed with `npm ci` the first time a project needs them, once per Cella version;
//! - `wit/entity.wit`.
//!
//! [`build`] runs `npm install` in a project without `node_modules`, then the SDK's build script
//! with Node (bundle with esbuild, then componentize-js), streaming the tools' output to stderr,
//! and returns the component it wrote to `target/<name>.wasm` (with the bundled module beside
//! it as `target/<name>.js`: a guest's stack traces give line numbers in it). A project that
//! lists the tools in its own devDependencies builds with its versions instead.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::scaffold::{self, Kind};

/// The componentize-js release the JavaScript SDK is built and tested with (the toolchain's
/// `package.json` pins it; a unit test keeps the two in step).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The esbuild release that bundles an entity into the one module componentize-js takes.
pub const ESBUILD_VERSION: &str = "0.28.2";

/// The oldest Node.js major version the build tools run on.
pub const MIN_NODE_MAJOR: u32 = 20;

/// How to get Node.js and npm.
const NODE_HINT: &str = "install Node.js 20 or later, which comes with npm (https://nodejs.org)";

/// How many lines of a tool's output a failure repeats.
const TAIL_LINES: usize = 15;

/// The `package.json` of the SDK copy: the package without the SDK's own development tools
/// (the same name, version, module type and exports as `sdk-guest/js/package.json`; a unit test
/// checks).
const SDK_MANIFEST: &str = r#"{
  "name": "cella-sdk",
  "version": "0.1.0",
  "description": "JavaScript SDK for Cella entities: write a value or event-sourced entity as a plain definition, export it as a cella:entity component.",
  "private": true,
  "license": "Apache-2.0",
  "type": "module",
  "exports": {
    ".": "./src/cella.js",
    "./testing": "./src/testing.js",
    "./tools/componentize": "./tools/componentize.mjs"
  },
  "engines": {
    "node": ">=20"
  }
}
"#;

/// Every file of the SDK copy, relative to `$CELLA_HOME/sdk/<version>`: the package (with its
/// own manifest) under `js/cella-sdk/`, the pinned toolchain's manifests under `js/toolchain/`.
fn sdk_files() -> Vec<(String, &'static str)> {
    let package = cella_sdk::bundle::JS.iter().map(|(path, text)| {
        let to = match *path {
            "package.json" | "package-lock.json" => format!("js/toolchain/{path}"),
            _ => format!("js/cella-sdk/{path}"),
        };
        (to, *text)
    });
    std::iter::once(("js/cella-sdk/package.json".to_string(), SDK_MANIFEST))
        .chain(package)
        .chain(scaffold::wit_files())
        .collect()
}

/// `src/index.js` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("templates/js_value.js");
/// `test/index.test.js` of a new value entity.
const VALUE_TEST_TEMPLATE: &str = include_str!("templates/js_value_test.js");
/// `src/index.js` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("templates/js_event_sourced.js");
/// `test/index.test.js` of a new event-sourced entity.
const EVENT_SOURCED_TEST_TEMPLATE: &str = include_str!("templates/js_event_sourced_test.js");

const GITIGNORE: &str = "/node_modules\n/target\n/.cella\n";

/// Where the SDK copy is.
pub struct JsSdk {
    /// The `cella-sdk` package directory.
    pub package: PathBuf,
    /// The directory the pinned build tools are installed in (`node_modules` inside).
    pub toolchain: PathBuf,
    /// `entity.wit`.
    pub wit: PathBuf,
}

impl JsSdk {
    fn at(root: &Path) -> Self {
        JsSdk {
            package: root.join("js").join("cella-sdk"),
            toolchain: root.join("js").join("toolchain"),
            wit: root.join("wit").join("entity.wit"),
        }
    }

    fn build_script(&self) -> PathBuf {
        self.package.join("tools").join("componentize.mjs")
    }
}

/// Whether `dir` looks like a JavaScript entity: a `package.json` and no `Cargo.toml`.
pub fn is_js_project(dir: &Path) -> bool {
    dir.join("package.json").is_file() && !dir.join("Cargo.toml").exists()
}

/// Writes the embedded JavaScript SDK and WIT to `$CELLA_HOME/sdk/<version>` where they are
/// missing or differ (unchanged files are not touched).
pub fn ensure_js_sdk() -> anyhow::Result<JsSdk> {
    let root = scaffold::cella_home()?
        .join("sdk")
        .join(scaffold::SDK_VERSION);
    write_sdk(&root)
}

fn write_sdk(root: &Path) -> anyhow::Result<JsSdk> {
    scaffold::write_sdk_files(root, sdk_files(), "the Cella JavaScript SDK")?;
    Ok(JsSdk::at(root))
}

/// The programs a build runs.
struct Tools<'a> {
    node: &'a str,
    npm: &'a str,
}

const SYSTEM_TOOLS: Tools<'static> = Tools {
    node: "node",
    npm: "npm",
};

/// Builds the JavaScript entity in `dir` into a component and returns its path,
/// `dir/target/<name>.wasm` (`<name>`: the package name without its scope). The tools' output
/// streams to stderr.
///
/// `dir` holds a `package.json` whose `main` module (default `src/index.js`, then `index.js`)
/// exports the entity as `entity`. Runs `npm install` first if `dir` has no `node_modules`, and
/// installs the pinned toolchain into the SDK copy if the project does not bring its own. Needs
/// Node.js [`MIN_NODE_MAJOR`] or later and npm. The component is not validated here: pass its
/// bytes to [`crate::guest_build::validate`].
pub async fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = ensure_js_sdk()?;
    build_with(dir, &SYSTEM_TOOLS, &sdk).await
}

/// What a project's `package.json` says.
struct Project {
    dir: PathBuf,
    name: String,
    entry: PathBuf,
}

fn read_project(dir: &Path) -> anyhow::Result<Project> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| anyhow::anyhow!("cannot open the directory {}: {e}", dir.display()))?;
    let manifest_path = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}\nhint: a JavaScript entity is a directory with a package.json \
             whose main module exports `entity`; make one with `cella new`",
            manifest_path.display()
        )
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", manifest_path.display()))?;
    let package_name = manifest["name"].as_str().unwrap_or_default();
    let unscoped = package_name.rsplit('/').next().unwrap_or_default();
    let name = if unscoped.is_empty() {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "entity".to_string())
    } else {
        unscoped.to_string()
    };
    let entry = match manifest["main"].as_str() {
        Some(main) => {
            let entry = dir.join(main);
            if !entry.is_file() {
                bail!(
                    "the main module {} of {} does not exist\nhint: point `main` in package.json \
                     at the module that exports `entity`",
                    entry.display(),
                    manifest_path.display()
                );
            }
            entry
        }
        None => ["src/index.js", "index.js"]
            .iter()
            .map(|candidate| dir.join(candidate))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no `main`, and there is no src/index.js or index.js\nhint: set \
                     `main` in package.json to the module that exports `entity`",
                    manifest_path.display()
                )
            })?,
    };
    Ok(Project { dir, name, entry })
}

async fn build_with(dir: &Path, tools: &Tools<'_>, sdk: &JsSdk) -> anyhow::Result<PathBuf> {
    let project = read_project(dir)?;
    check_node(tools.node).await?;
    if !project.dir.join("node_modules").is_dir() {
        eprintln!("installing the project's dependencies (npm install)");
        run_npm(
            tools.npm,
            &project.dir,
            &["install", "--no-audit", "--no-fund"],
        )
        .await?;
    }
    let componentize = Path::new("@bytecodealliance").join("componentize-js");
    if !has_package(&project.dir, &componentize) && !has_package(&sdk.toolchain, &componentize) {
        eprintln!(
            "installing the JavaScript build tools (componentize-js {COMPONENTIZE_JS_VERSION}, \
             esbuild {ESBUILD_VERSION}) into {}; this happens once per Cella version",
            sdk.toolchain.display()
        );
        run_npm(
            tools.npm,
            &sdk.toolchain,
            &["ci", "--no-audit", "--no-fund"],
        )
        .await?;
    }

    let out_dir = project.dir.join("target");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the directory {}", out_dir.display()))?;
    let wasm = out_dir.join(format!("{}.wasm", project.name));
    let bundle = out_dir.join(format!("{}.js", project.name));

    let mut command = Command::new(tools.node);
    command
        .current_dir(&project.dir)
        .arg(sdk.build_script())
        .arg("--entry")
        .arg(&project.entry)
        .arg("--out")
        .arg(&wasm)
        .arg("--wit")
        .arg(&sdk.wit)
        .arg("--tools-from")
        .arg(&project.dir)
        .arg("--tools-fallback")
        .arg(&sdk.toolchain)
        .arg("--bundle-out")
        .arg(&bundle);
    let (status, tail) = run_streamed(command, "Node.js", tools.node).await?;
    if !status.success() || !wasm.is_file() {
        let status = match status.code() {
            Some(code) => format!("the build script exited with {code}"),
            None => "the build script was stopped".to_string(),
        };
        let start = tail.len().saturating_sub(TAIL_LINES);
        bail!(
            "the build failed ({status})\n{}\nhint: fix the errors above (an exception while \
             the entity's module loads fails the build) and build again",
            tail[start..].join("\n")
        );
    }
    Ok(wasm)
}

/// Whether package `name` is installed in the `node_modules` of `dir` or of one of its parents
/// (where Node would find it).
fn has_package(dir: &Path, name: &Path) -> bool {
    dir.ancestors().any(|d| {
        d.join("node_modules")
            .join(name)
            .join("package.json")
            .is_file()
    })
}

/// Checks that `node` runs and is recent enough.
async fn check_node(node: &str) -> anyhow::Result<()> {
    let output = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| not_runnable("Node.js", node, &e))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let major = text
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if output.status.success() && major >= MIN_NODE_MAJOR => Ok(()),
        _ => bail!(
            "{} is Node.js {}; building JavaScript entities needs Node.js {MIN_NODE_MAJOR} or \
             later\nhint: {NODE_HINT}",
            node,
            if text.is_empty() { "(unknown)" } else { &text }
        ),
    }
}

/// Runs `npm ARGS` in `dir`, its output streamed to stderr.
async fn run_npm(npm: &str, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new(npm);
    command.current_dir(dir).args(args);
    let (status, tail) = run_streamed(command, "npm", npm).await?;
    if !status.success() {
        let start = tail.len().saturating_sub(TAIL_LINES);
        bail!(
            "`npm {}` in {} failed ({status})\n{}\nhint: check the network and the project's \
             package.json, then build again",
            args.join(" "),
            dir.display(),
            tail[start..].join("\n")
        );
    }
    Ok(())
}

/// Runs `command`, copying its stdout and stderr to stderr; returns its status and the last
/// lines it printed.
async fn run_streamed(
    mut command: Command,
    what: &str,
    program: &str,
) -> anyhow::Result<(std::process::ExitStatus, Vec<String>)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| not_runnable(what, program, &e))?;
    let stdout = child
        .stdout
        .take()
        .context("the tool's stdout is missing")?;
    let stderr = child
        .stderr
        .take()
        .context("the tool's stderr is missing")?;
    let out = tokio::spawn(crate::guest_build::echo_lines(stdout));
    let err = tokio::spawn(crate::guest_build::echo_lines(stderr));
    let status = child
        .wait()
        .await
        .with_context(|| format!("waiting for {program} failed"))?;
    let mut tail = out.await.unwrap_or_default();
    tail.extend(err.await.unwrap_or_default());
    Ok((status, tail))
}

fn not_runnable(what: &str, program: &str, e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("{what} is not installed (cannot run {program})\nhint: {NODE_HINT}")
    } else {
        anyhow::anyhow!("cannot run {program}: {e}\nhint: {NODE_HINT}")
    }
}

/// Checks `name` as the name of a new JavaScript entity.
fn validate_name(name: &str) -> anyhow::Result<()> {
    scaffold::validate_project_name(name, &["cella-sdk", "node_modules"])
}

/// The `package.json` of a new project depending on the SDK copy at `sdk`.
fn project_manifest(name: &str, sdk: &Path) -> anyhow::Result<String> {
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "main": "src/index.js",
        "scripts": { "test": "node --test" },
        "devDependencies": {
            "cella-sdk": format!("file:{}", sdk.to_string_lossy()),
        },
    });
    let mut text =
        serde_json::to_string_pretty(&manifest).context("cannot write the package.json")?;
    text.push('\n');
    Ok(text)
}

/// Scaffolds the JavaScript entity `name` of `kind` in `dir` (which must not exist or be
/// empty): `package.json`, `src/index.js`, `test/index.test.js` and `.gitignore`. Returns the
/// SDK package's directory.
pub fn new_project(name: &str, kind: Kind, dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = ensure_js_sdk()?;
    write_project(name, kind, dir, &sdk)?;
    Ok(sdk.package)
}

fn write_project(name: &str, kind: Kind, dir: &Path, sdk: &JsSdk) -> anyhow::Result<()> {
    validate_name(name)?;
    scaffold::ensure_empty_dir(dir)?;
    let (entity, test) = match kind {
        Kind::Value => (VALUE_TEMPLATE, VALUE_TEST_TEMPLATE),
        Kind::EventSourced => (EVENT_SOURCED_TEMPLATE, EVENT_SOURCED_TEST_TEMPLATE),
    };
    let files = [
        ("package.json", project_manifest(name, &sdk.package)?),
        ("src/index.js", entity.replace("{{name}}", name)),
        ("test/index.test.js", test.replace("{{name}}", name)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    scaffold::write_project_files(dir, &files)
}

/// `cella new --lang js`: scaffolds the entity and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> anyhow::Result<()> {
    validate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let sdk = new_project(name, kind, &dir)?;
    let label = kind.label();
    println!(
        "created the {label} entity `{name}` (JavaScript) in {}",
        dir.display()
    );
    println!("  package.json, src/index.js, test/index.test.js, .gitignore");
    println!("  SDK: {}", sdk.display());
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  npm install   # links the SDK");
    println!("  npm test      # the entity's unit tests");
    println!(
        "  cella build   # the component (needs Node.js {MIN_NODE_MAJOR}+; installs \
         componentize-js {COMPONENTIZE_JS_VERSION} once)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(relative: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_sdk_module_is_embedded() {
        let mut sources = Vec::new();
        for sub in ["src", "tools"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../sdk-guest/js")
                .join(sub);
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".js") || name.ends_with(".mjs") {
                    sources.push(format!("js/cella-sdk/{sub}/{name}"));
                }
            }
        }
        sources.sort();
        let mut embedded: Vec<String> = sdk_files()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with("js/cella-sdk/") && !p.ends_with("package.json"))
            .collect();
        embedded.sort();
        assert_eq!(sources, embedded);
    }

    #[test]
    fn the_sdk_manifest_and_pins_match_the_repository() {
        let repo: serde_json::Value =
            serde_json::from_str(&repo_file("sdk-guest/js/package.json")).unwrap();
        let copy: serde_json::Value = serde_json::from_str(SDK_MANIFEST).unwrap();
        for field in ["name", "version", "type", "exports", "engines"] {
            assert_eq!(repo[field], copy[field], "{field}");
        }
        assert!(copy.get("devDependencies").is_none());
        let tools = &repo["devDependencies"];
        assert_eq!(
            tools["@bytecodealliance/componentize-js"],
            COMPONENTIZE_JS_VERSION
        );
        assert_eq!(tools["esbuild"], ESBUILD_VERSION);
        let lock: serde_json::Value =
            serde_json::from_str(&repo_file("sdk-guest/js/package-lock.json")).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/@bytecodealliance/componentize-js"]["version"],
            COMPONENTIZE_JS_VERSION
        );
    }

    #[test]
    fn writes_the_sdk_and_scaffolds_projects() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        assert!(sdk.package.join("src/cella.js").is_file());
        assert!(sdk.build_script().is_file());
        assert!(sdk.toolchain.join("package-lock.json").is_file());
        assert!(sdk.wit.is_file());

        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ledger");
        write_project("ledger", Kind::EventSourced, &dir, &sdk).unwrap();
        let entity = std::fs::read_to_string(dir.join("src/index.js")).unwrap();
        assert!(entity.contains("entities/ledger/alice"), "{entity}");
        assert!(entity.contains("export const entity = eventSourcedEntity("));
        let test = std::fs::read_to_string(dir.join("test/index.test.js")).unwrap();
        assert!(!entity.contains("{{") && !test.contains("{{"));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["name"], "ledger");
        assert_eq!(
            manifest["devDependencies"]["cella-sdk"],
            format!("file:{}", sdk.package.to_string_lossy())
        );
        assert!(is_js_project(&dir));
        let project = read_project(&dir).unwrap();
        assert_eq!(project.name, "ledger");
        assert!(project.entry.ends_with("src/index.js"));

        let again = write_project("ledger", Kind::Value, &dir, &sdk).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        for bad in ["", "Ledger", "2x", "a b", "a/b", "cella-sdk"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_names_and_entries() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("shop");
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"name":"@acme/cart","main":"lib/cart.js"}"#,
        )
        .unwrap();
        let missing = read_project(&dir).err().unwrap().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::write(dir.join("lib/cart.js"), "").unwrap();
        let project = read_project(&dir).unwrap();
        assert_eq!(project.name, "cart");
        assert!(project.entry.ends_with("lib/cart.js"));

        std::fs::write(dir.join("package.json"), "{}").unwrap();
        let none = read_project(&dir).err().unwrap().to_string();
        assert!(none.contains("no `main`"), "{none}");
        std::fs::write(dir.join("index.js"), "").unwrap();
        let project = read_project(&dir).unwrap();
        assert_eq!(project.name, "shop");
        assert!(project.entry.ends_with("index.js"));

        let error = read_project(work.path()).err().unwrap().to_string();
        assert!(error.contains("hint: a JavaScript entity"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_node_or_npm_says_how_to_install_them() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("counter");
        write_project("counter", Kind::Value, &dir, &sdk).unwrap();
        let no_node = Tools {
            node: "/nonexistent/node",
            npm: "npm",
        };
        let error = build_with(&dir, &no_node, &sdk)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("Node.js is not installed"), "{error}");
        assert!(error.contains("hint: install Node.js 20"), "{error}");

        if Command::new("node").arg("--version").output().await.is_ok() {
            let no_npm = Tools {
                node: "node",
                npm: "/nonexistent/npm",
            };
            let error = build_with(&dir, &no_npm, &sdk)
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains("npm is not installed"), "{error}");
        }
    }

    /// Builds both templates with the real tools (installs the toolchain, ~400 MB, and takes a
    /// while): `cargo test -p cella-server build_js -- --ignored`.
    #[tokio::test]
    #[ignore = "needs Node.js and npm, downloads the toolchain and takes a while"]
    async fn builds_the_templates() {
        let home = tempfile::tempdir().unwrap();
        let sdk = write_sdk(home.path()).unwrap();
        let work = tempfile::tempdir().unwrap();
        for (name, kind, commands) in [
            ("counter", Kind::Value, 2),
            ("ledger", Kind::EventSourced, 3),
        ] {
            let dir = work.path().join(name);
            write_project(name, kind, &dir, &sdk).unwrap();
            let wasm = build_with(&dir, &SYSTEM_TOOLS, &sdk).await.unwrap();
            assert_eq!(
                wasm,
                dir.canonicalize()
                    .unwrap()
                    .join(format!("target/{name}.wasm"))
            );
            assert!(wasm.with_extension("js").is_file());
            let checked = crate::guest_build::validate(&std::fs::read(&wasm).unwrap())
                .await
                .unwrap();
            assert_eq!(checked.commands.len(), commands);
        }
    }
}
