//! Tidy checks over the repository's sources, run as tests (so by `cargo test --workspace`, and
//! so by `cargo xtask ci`): every `.rs` file opens with a `//!` doc and stays within
//! [`MAX_LINES`]; `include_str!`/`include_bytes!` stay inside their crate; runtime code does not
//! `.unwrap()` or `.expect(..)` (outside `#[cfg(test)]`); ARCHITECTURE.md names every crate
//! (its path in `Cargo.toml`) and every module directory of the runtime (in full, or as
//! `` `module/` `` in its crate's section). Each check is a line-based scan and lists every
//! offending file with a hint.
//!
//! Every `.rs` file of the repository is scanned except under `target/`, `node_modules/` and
//! hidden directories (`.git`, a node's `.cella` data).

use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
};

use crate::workspace_root;

/// The most lines a `.rs` file may have.
const MAX_LINES: usize = 600;

/// Files allowed over [`MAX_LINES`], with the reason they cannot be split (none so far).
const LONG_FILES: &[(&str, &str)] = &[];

/// Directories never scanned: build output, installed packages.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];

/// Every `.rs` file under `root` (relative path, text), sorted by path.
fn rust_files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_str()) {
                    dirs.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                files.push((relative, text));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// Fails with every problem found (one line each) under `what`, if any.
fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

/// `path` in the repository's spelling (`/` separators), for messages and comparisons.
fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_rust_file_opens_with_a_doc_comment() {
    let problems: Vec<String> = rust_files(&workspace_root())
        .into_iter()
        .filter(|(_, text)| {
            !text
                .lines()
                .find(|line| !line.trim().is_empty())
                .is_some_and(|line| line.starts_with("//!"))
        })
        .map(|(path, _)| {
            format!(
                "{}: does not open with a `//!` doc\n  hint: begin the file with `//! ` lines \
                 saying what it owns",
                slashed(&path)
            )
        })
        .collect();
    report("files without a module doc", &problems);
}

#[test]
fn no_rust_file_is_too_long() {
    let problems: Vec<String> = rust_files(&workspace_root())
        .into_iter()
        .map(|(path, text)| (slashed(&path), text.lines().count()))
        .filter(|(path, lines)| *lines > MAX_LINES && !LONG_FILES.iter().any(|(p, _)| p == path))
        .map(|(path, lines)| {
            format!(
                "{path}: {lines} lines, over {MAX_LINES}\n  hint: split it into modules by \
                 responsibility"
            )
        })
        .collect();
    report("files too long", &problems);
}

/// `path` with `.` and `..` resolved without the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The directory of the nearest `Cargo.toml` at or above `dir`, below `root` (`root` itself
/// if none is nearer).
fn crate_dir(root: &Path, dir: &Path) -> PathBuf {
    let mut at = Some(dir);
    while let Some(dir) = at {
        if dir.join("Cargo.toml").is_file() || !dir.starts_with(root) || dir == root {
            return dir.to_path_buf();
        }
        at = dir.parent();
    }
    root.to_path_buf()
}

/// The literal paths of the `include_str!("…")` and `include_bytes!("…")` on `line`.
fn included_paths(line: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    for macro_name in ["include_str!(", "include_bytes!("] {
        let mut rest = line;
        while let Some(at) = rest.find(macro_name) {
            rest = &rest[at + macro_name.len()..];
            let literal = rest.trim_start();
            if let Some(literal) = literal.strip_prefix('"')
                && let Some(end) = literal.find('"')
            {
                paths.push(&literal[..end]);
            }
        }
    }
    paths
}

#[test]
fn includes_stay_inside_their_crate() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for (path, text) in rust_files(&root) {
        let file = root.join(&path);
        let dir = file.parent().unwrap_or(&root).to_path_buf();
        let home = crate_dir(&root, &dir);
        for (number, line) in text.lines().enumerate() {
            for included in included_paths(line) {
                let target = normalize(&dir.join(included));
                let target_home = crate_dir(&root, target.parent().unwrap_or(&root));
                if target_home != home {
                    problems.push(format!(
                        "{}:{}: includes {included}, outside its crate ({})\n  hint: move the \
                         file into the crate, or have the crate that owns it export it",
                        slashed(&path),
                        number + 1,
                        slashed(home.strip_prefix(&root).unwrap_or(&home)),
                    ));
                }
            }
        }
    }
    report("includes leaving their crate", &problems);
}

/// Whether `path` (relative to the root) is runtime code: `runtime/<crate>/src/…`, not in a
/// `tests` or `benches` directory.
fn is_runtime_code(path: &Path) -> bool {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.len() > 3
        && parts[0] == "runtime"
        && parts[2] == "src"
        && !parts.iter().any(|p| p == "tests" || p == "benches")
}

/// The lines of `text` (number from 1, text) that call `.unwrap()` or `.expect(..)` outside
/// comments and before the first `#[cfg(test)]` at column 0 (everything after it is test code).
fn unwraps(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| line.contains(".unwrap()") || line.contains(".expect("))
        .map(|(number, line)| (number + 1, line.trim()))
        .collect()
}

#[test]
fn runtime_code_does_not_unwrap() {
    let mut problems = Vec::new();
    for (path, text) in rust_files(&workspace_root()) {
        if !is_runtime_code(&path) {
            continue;
        }
        for (number, line) in unwraps(&text) {
            problems.push(format!(
                "{}:{number}: {line}\n  hint: return an error (`?`, `.context(..)`) or handle \
                 the case; a panic in the runtime takes down every entity the node serves",
                slashed(&path),
            ));
        }
    }
    report("unwrap/expect in runtime code", &problems);
}

/// The workspace members listed in the root `Cargo.toml`'s `members = [ … ]`.
fn workspace_members(manifest: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if !inside {
            inside = line.starts_with("members") && line.contains('[');
        }
        if inside {
            members.extend(line.split('"').skip(1).step_by(2).map(str::to_owned));
            if line.contains(']') {
                break;
            }
        }
    }
    members
}

/// The directories below `runtime/*/src/` that hold `.rs` files, relative to `root`.
fn runtime_module_dirs(root: &Path) -> BTreeSet<String> {
    rust_files(root)
        .into_iter()
        .filter_map(|(path, _)| {
            let dir = path.parent()?;
            let parts: Vec<_> = dir.components().collect();
            let below_src = parts.len() > 3
                && parts[0].as_os_str() == "runtime"
                && parts[2].as_os_str() == "src";
            below_src.then(|| slashed(dir))
        })
        .collect()
}

/// Whether `doc` names `path` in backticks: `` `path` `` or `` `path/…` ``.
fn names(doc: &str, path: &str) -> bool {
    doc.contains(&format!("`{path}`")) || doc.contains(&format!("`{path}/"))
}

/// The sections of `doc` (from a `#` heading to the next) whose heading names `crate_dir`.
fn crate_sections<'a>(doc: &'a str, crate_dir: &str) -> Vec<&'a str> {
    let mut sections = Vec::new();
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        if line.starts_with('#') {
            if let Some(at) = start.take() {
                sections.push(&doc[at..offset]);
            }
            if names(line, crate_dir) {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    sections.extend(start.map(|at| &doc[at..]));
    sections
}

/// Whether `doc` names the module directory `dir` (`runtime/<crate>/src/<module>`): in full,
/// or as `` `<module>/` `` in a section whose heading names `runtime/<crate>`.
fn names_module_dir(doc: &str, dir: &str) -> bool {
    let parts: Vec<&str> = dir.splitn(4, '/').collect();
    let [runtime, name, _src, module] = parts[..] else {
        return names(doc, dir);
    };
    names(doc, dir)
        || crate_sections(doc, &format!("{runtime}/{name}"))
            .iter()
            .any(|section| section.contains(&format!("`{module}/")))
}

#[test]
fn architecture_names_every_crate_and_module_directory() {
    let root = workspace_root();
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    let architecture = read("ARCHITECTURE.md");
    let members = workspace_members(&read("Cargo.toml"));
    assert!(!members.is_empty(), "no workspace members in Cargo.toml");
    let mut problems: Vec<String> = members
        .iter()
        .filter(|member| !names(&architecture, member))
        .map(|member| {
            format!(
                "ARCHITECTURE.md: the crate `{member}` is not named\n  hint: write `{member}` \
                 (its path in Cargo.toml, in backticks) where the code map describes it"
            )
        })
        .collect();
    problems.extend(
        runtime_module_dirs(&root)
            .into_iter()
            .filter(|dir| !names_module_dir(&architecture, dir))
            .map(|dir| {
                let module = dir.splitn(4, '/').last().unwrap_or(&dir).to_owned();
                format!(
                    "ARCHITECTURE.md: the module directory `{dir}` is not named\n  hint: write \
                     `{module}/` in the section of its crate (or `{dir}/` anywhere), in backticks"
                )
            }),
    );
    report("ARCHITECTURE.md's code map", &problems);
}

#[test]
fn the_scans_read_what_they_should() {
    assert_eq!(
        included_paths(r#"const A: &str = include_str!("../x.md"); include_bytes!( "b.bin")"#),
        vec!["../x.md", "b.bin"]
    );
    assert_eq!(
        normalize(Path::new("/r/a/src/../../b/./c")),
        PathBuf::from("/r/b/c")
    );
    assert!(is_runtime_code(Path::new("runtime/node/src/http.rs")));
    assert!(is_runtime_code(Path::new(
        "runtime/node/src/http/routes.rs"
    )));
    assert!(!is_runtime_code(Path::new("runtime/node/tests/http.rs")));
    assert!(!is_runtime_code(Path::new(
        "runtime/node/src/tests/http.rs"
    )));
    assert!(!is_runtime_code(Path::new("tests/src/cluster.rs")));
    let code = "//! doc\nlet a = b.unwrap();\n// c.unwrap()\n  /// d.expect(\"x\")\n\
                let e = f.expect(\"g\");\nlet h = i.unwrap_or(0);\n#[cfg(test)]\nmod tests {\n\
                let j = k.unwrap();\n}\n";
    assert_eq!(
        unwraps(code),
        vec![(2, "let a = b.unwrap();"), (5, "let e = f.expect(\"g\");")]
    );
    let manifest =
        "[workspace]\nmembers = [\n    \"a/b\",\n    \"c\",\n]\ndefault-members = [\"a/b\"]\n";
    assert_eq!(workspace_members(manifest), vec!["a/b", "c"]);
    assert!(names("see `runtime/core` (…)", "runtime/core"));
    assert!(names("in `runtime/core/src/x.rs`", "runtime/core"));
    assert!(!names("in `runtime/core2`", "runtime/core"));
    let doc = "# Map\n## `runtime/node` (`cella-node`)\n- `http/` — routes\n\
               ## `runtime/cli`\n- `cli/` — commands; `runtime/dev/src/scaffold/` writes\n";
    assert!(names_module_dir(doc, "runtime/node/src/http"));
    assert!(names_module_dir(doc, "runtime/cli/src/cli"));
    assert!(names_module_dir(doc, "runtime/dev/src/scaffold"));
    assert!(!names_module_dir(doc, "runtime/node/src/cli"));
    assert!(!names_module_dir(doc, "runtime/dev/src/templates"));
    let root = workspace_root();
    assert_eq!(
        crate_dir(&root, &root.join("xtask/src")),
        root.join("xtask")
    );
    assert_eq!(crate_dir(&root, &root.join(".ci")), root);
}
