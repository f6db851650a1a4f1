//! The JavaScript [`Toolchain`]: a directory holding a `package.json` (and no `Cargo.toml`)
//! whose main module exports the entity, built with the SDK's build script under Node.js
//! (bundle with esbuild, then componentize-js).
//!
//! The build runs `npm install` in a project without `node_modules`, installs the pinned build
//! tools (componentize-js [`COMPONENTIZE_JS_VERSION`], esbuild [`ESBUILD_VERSION`]) into the SDK
//! copy's `js/toolchain/` with `npm ci` the first time a project needs them (once per Cella
//! version; a project that lists the tools in its own devDependencies builds with its
//! versions instead), then runs `tools/componentize.mjs`, streaming the tools' output to
//! stderr. The component goes to `target/<name>.wasm`, with the bundled module beside it as
//! `target/<name>.js` (a guest's stack traces give line numbers in it).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::Command;

use super::{BuildFuture, Lang, Toolchain, in_source_dirs, run_streamed, source_dirs, tail};
use crate::{
    error::{Error, Hint, Result, exit_status},
    sdk::JsSdk,
};

/// The componentize-js release the JavaScript SDK is built and tested with (the toolchain's
/// `package.json` pins it; a unit test keeps the two in step).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The esbuild release that bundles an entity into the one module componentize-js takes.
pub const ESBUILD_VERSION: &str = "0.28.2";

/// The oldest Node.js major version the build tools run on.
pub const MIN_NODE_MAJOR: u32 = 20;

/// How to get Node.js and npm.
const NODE_HINT: &str = "install Node.js 20 or later, which comes with npm (https://nodejs.org)";

/// Directories that hold tests, not the entity: `cella dev` does not rebuild when they change.
const TEST_DIRS: &[&str] = &["test", "tests", "__tests__"];

/// What a module's file name ends in.
const MODULE_EXTENSIONS: &[&str] = &[
    ".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx", ".json",
];

/// JavaScript entities: a package whose main module exports `entity`.
pub struct Js;

impl Toolchain for Js {
    fn lang(&self) -> Lang {
        Lang::Js
    }

    fn detect(&self, dir: &Path) -> bool {
        is_project(dir)
    }

    fn default_type(&self, dir: &Path) -> Result<String> {
        Ok(read_project(dir)?.name)
    }

    fn sources(&self) -> &'static str {
        "the modules (.js, .mjs, .ts, .json, …; not tests) and package.json"
    }

    fn watch_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        source_dirs(dir, TEST_DIRS)
    }

    fn is_source(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
            return false;
        };
        // `npm install` rewrites the lock file; the build does not read it.
        if name == "package-lock.json" {
            return false;
        }
        MODULE_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
            && !name.contains(".test.")
            && !name.contains(".spec.")
            && in_source_dirs(path, TEST_DIRS)
    }

    fn build<'a>(&'a self, dir: &'a Path) -> BuildFuture<'a> {
        Box::pin(async move {
            let sdk = crate::sdk::ensure_js_sdk()?;
            build_with(dir, &SYSTEM_TOOLS, &sdk).await
        })
    }
}

/// Whether `dir` looks like a JavaScript entity: a `package.json` and no `Cargo.toml`.
pub fn is_project(dir: &Path) -> bool {
    dir.join("package.json").is_file() && !dir.join("Cargo.toml").exists()
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

/// What a project's `package.json` says.
pub(crate) struct Project {
    pub dir: PathBuf,
    /// The package name without its scope (else the directory's name).
    pub name: String,
    /// The main module: `main`, else `src/index.js`, else `index.js`.
    pub entry: PathBuf,
}

pub(crate) fn read_project(dir: &Path) -> Result<Project> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::open_dir(dir, e, Hint::NONE))?;
    let manifest_path = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        Error::read(
            &manifest_path,
            e,
            "a JavaScript entity is a directory with a package.json whose main module exports \
             `entity`; make one with `cella new`"
                .into(),
        )
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Project {
        message: format!("{} is not valid JSON", manifest_path.display()),
        hint: Hint::NONE,
        source: Some(Box::new(e)),
    })?;
    let package_name = manifest["name"].as_str().unwrap_or_default();
    let unscoped = package_name.rsplit('/').next().unwrap_or_default();
    let name = if unscoped.is_empty() {
        super::dir_name(&dir, "entity")
    } else {
        unscoped.to_string()
    };
    let entry = match manifest["main"].as_str() {
        Some(main) => {
            let entry = dir.join(main);
            if !entry.is_file() {
                return Err(Error::project(
                    format!(
                        "the main module {} of {} does not exist",
                        entry.display(),
                        manifest_path.display()
                    ),
                    "point `main` in package.json at the module that exports `entity`",
                ));
            }
            entry
        }
        None => ["src/index.js", "index.js"]
            .iter()
            .map(|candidate| dir.join(candidate))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                Error::project(
                    format!(
                        "{} has no `main`, and there is no src/index.js or index.js",
                        manifest_path.display()
                    ),
                    "set `main` in package.json to the module that exports `entity`",
                )
            })?,
    };
    Ok(Project { dir, name, entry })
}

/// Builds the JavaScript entity in `dir` into a component and returns its path,
/// `dir/target/<name>.wasm`. Needs Node.js [`MIN_NODE_MAJOR`] or later and npm.
async fn build_with(dir: &Path, tools: &Tools<'_>, sdk: &JsSdk) -> Result<PathBuf> {
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
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::create_dir(&out_dir, e))?;
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
    let (status, lines) = run_streamed(command, tools.node, |e| {
        not_runnable("Node.js", tools.node, e)
    })
    .await?;
    if !status.success() || !wasm.is_file() {
        return Err(Error::Build {
            status: exit_status("the build script", status),
            summary: tail(&lines),
            hint: "fix the errors above (an exception while the entity's module loads fails the \
                   build) and build again"
                .into(),
        });
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
async fn check_node(node: &str) -> Result<()> {
    let output = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| not_runnable("Node.js", node, e))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let major = text
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if output.status.success() && major >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(Error::tool(
            format!(
                "{node} is Node.js {}; building JavaScript entities needs Node.js \
                 {MIN_NODE_MAJOR} or later",
                if text.is_empty() { "(unknown)" } else { &text }
            ),
            NODE_HINT,
        )),
    }
}

/// Runs `npm ARGS` in `dir`, its output streamed to stderr.
async fn run_npm(npm: &str, dir: &Path, args: &[&str]) -> Result<()> {
    let mut command = Command::new(npm);
    command.current_dir(dir).args(args);
    let (status, lines) = run_streamed(command, npm, |e| not_runnable("npm", npm, e)).await?;
    if !status.success() {
        return Err(Error::tool(
            format!(
                "`npm {}` in {} failed ({status})\n{}",
                args.join(" "),
                dir.display(),
                tail(&lines)
            ),
            "check the network and the project's package.json, then build again",
        ));
    }
    Ok(())
}

fn not_runnable(what: &str, program: &str, e: std::io::Error) -> Error {
    let message = if e.kind() == std::io::ErrorKind::NotFound {
        format!("{what} is not installed (cannot run {program})")
    } else {
        format!("cannot run {program}")
    };
    Error::Tool {
        message,
        hint: NODE_HINT.into(),
        source: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaffold::{Kind, js::write_project};

    #[test]
    fn sources_are_the_modules_but_not_the_tests() {
        for (path, source) in [
            ("src/index.js", true),
            ("src/lib/money.mjs", true),
            ("index.ts", true),
            ("package.json", true),
            ("package-lock.json", false),
            ("test/index.test.js", false),
            ("src/index.test.js", false),
            ("lib/a.spec.ts", false),
            ("node_modules/x/index.js", false),
            ("target/counter.js", false),
            (".cella/x.json", false),
            ("README.md", false),
        ] {
            assert_eq!(Js.is_source(Path::new(path)), source, "{path}");
        }
        let work = tempfile::tempdir().unwrap();
        for sub in ["src", "test", "node_modules", "target"] {
            std::fs::create_dir(work.path().join(sub)).unwrap();
        }
        assert_eq!(
            Js.watch_dirs(work.path()).unwrap(),
            [work.path().join("src")]
        );
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
        assert_eq!(Js.default_type(&dir).unwrap(), "cart");
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
        let sdk = crate::sdk::write_js_sdk(home.path()).unwrap();
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

    /// Builds both templates with the real tools (with the repository's `sdk-guest/js`
    /// toolchain if it is installed, else the toolchain is installed, ~400 MB, which takes a
    /// while): `cargo test -p cella-dev toolchain::js -- --ignored`.
    #[tokio::test]
    #[ignore = "needs Node.js and npm, may download the toolchain and takes a while"]
    async fn builds_the_templates() {
        let home = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::write_js_sdk(home.path()).unwrap();
        let installed =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk-guest/js/node_modules");
        #[cfg(unix)]
        if installed.is_dir() {
            std::os::unix::fs::symlink(&installed, sdk.toolchain.join("node_modules")).unwrap();
        }
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
            let checked = super::super::validate(&std::fs::read(&wasm).unwrap())
                .await
                .unwrap();
            assert_eq!(checked.commands.len(), commands);
        }
    }
}
