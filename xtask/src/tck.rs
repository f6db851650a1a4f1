//! `cargo xtask tck [--lang rust|python|js]`: builds the TCK components (tests/tck/SPEC.md) of
//! the chosen guest languages (default: all three) into `target/components/<lang>/` and runs
//! the TCK suite, `tests/tests/tck.rs`, against them. `cargo xtask ci` runs it for every
//! language after checking up front that their toolchains are there.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{build, ci, workspace_root};

/// The guest languages of the TCK, in the order the suite runs them.
pub const LANGS: &[&str] = &["rust", "python", "js"];

/// How a language other than Rust builds its TCK components.
struct Builder {
    lang: &'static str,
    /// The program that runs the build script.
    program: &'static str,
    /// The build script, relative to the workspace root; it takes the output directory.
    script: &'static str,
    /// What the script needs besides `program`, checked by [`check_toolchains`].
    needs: Need,
}

enum Need {
    /// A program that must answer `--version`, unless the environment variable names another.
    Program {
        name: &'static str,
        env: &'static str,
    },
    /// A directory (relative to the workspace root) that must exist.
    Dir(&'static str),
}

const BUILDERS: &[Builder] = &[
    Builder {
        lang: "python",
        program: "python3",
        script: "sdk-guest/python/build_examples.py",
        needs: Need::Program {
            name: "componentize-py",
            env: "COMPONENTIZE_PY",
        },
    },
    Builder {
        lang: "js",
        program: "node",
        script: "sdk-guest/js/build-examples.mjs",
        needs: Need::Dir("sdk-guest/js/node_modules/@bytecodealliance/componentize-js"),
    },
];

/// Parses `tck`'s arguments: `--lang L` (repeatable; `L` may be a comma-separated list).
pub fn parse_args(args: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut langs: Vec<&'static str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--lang=") {
            Some(value) => value,
            None if arg == "--lang" => it
                .next()
                .map(String::as_str)
                .context("--lang needs one of rust, python, js")?,
            None => bail!("unexpected argument `{arg}`"),
        };
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(lang) = LANGS.iter().find(|l| **l == name) else {
                bail!(
                    "unknown language `{name}` (the languages are {})",
                    LANGS.join(", ")
                );
            };
            if !langs.contains(lang) {
                langs.push(lang);
            }
        }
    }
    if langs.is_empty() {
        langs = LANGS.to_vec();
    }
    // The suite's order, whatever the order of the arguments.
    langs.sort_by_key(|lang| LANGS.iter().position(|l| l == lang));
    Ok(langs)
}

/// `cargo xtask tck`: builds and runs the TCK for `langs`, then prints the totals.
pub fn tck(langs: &[&str]) -> anyhow::Result<()> {
    check_toolchains(langs)?;
    let mut totals = [0u64; 3];
    run(langs, &mut totals)?;
    ci::print_totals("TCK tests", &totals)
}

/// Builds the TCK components of `langs` and runs the suite for them, adding its counts to
/// `totals` (passed, failed, ignored).
pub fn run(langs: &[&str], totals: &mut [u64; 3]) -> anyhow::Result<()> {
    for lang in langs {
        build_components(lang)?;
    }
    let selection = langs.join(",");
    println!("\nrunning the TCK for {selection}");
    ci::cargo_test(
        &["test", "-p", "cella-tests", "--test", "tck"],
        &[("CELLA_TCK_LANGS", selection.as_str())],
        totals,
    )
}

/// Builds one language's TCK components into `target/components/<lang>/`.
fn build_components(lang: &str) -> anyhow::Result<()> {
    let Some(builder) = BUILDERS.iter().find(|b| b.lang == lang) else {
        // Rust: the examples and the Rust models are guests of the workspace.
        return build::build_examples().map(|_| ());
    };
    let root = workspace_root();
    let script = require_script(&root, builder)?;
    let out = build::target_dir(&root).join("components").join(lang);
    println!("$ {} {} {}", builder.program, builder.script, out.display());
    let status = Command::new(builder.program)
        .current_dir(&root)
        .arg(&script)
        .arg(&out)
        .status()
        .with_context(|| {
            format!(
                "cannot run `{}`, which builds the {lang} TCK components: is it installed and on \
                 PATH?",
                builder.program
            )
        })?;
    if !status.success() {
        bail!(
            "building the {lang} TCK components failed: `{} {} {}` exited with {status}",
            builder.program,
            builder.script,
            out.display()
        );
    }
    Ok(())
}

fn require_script(root: &Path, builder: &Builder) -> anyhow::Result<std::path::PathBuf> {
    let script = root.join(builder.script);
    if !script.is_file() {
        bail!(
            "{} does not exist (yet): there is no way to build the {} TCK components, so the TCK \
             cannot run for `{}`",
            builder.script,
            builder.lang,
            builder.lang
        );
    }
    Ok(script)
}

/// Checks that every tool the TCK of `langs` needs is present, so that a missing toolchain fails
/// loudly before anything is built (the TCK never skips a language).
pub fn check_toolchains(langs: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root();
    let mut missing = Vec::new();
    for builder in BUILDERS.iter().filter(|b| langs.contains(&b.lang)) {
        if let Err(e) = require_script(&root, builder) {
            missing.push(e.to_string());
        }
        if !answers_version(builder.program) {
            missing.push(format!(
                "`{}` is not installed (or not on PATH): the {} TCK components are built with it",
                builder.program, builder.lang
            ));
        }
        match &builder.needs {
            Need::Program { name, env } => {
                let program = std::env::var(env)
                    .ok()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| (*name).to_owned());
                if !answers_version(&program) {
                    missing.push(format!(
                        "`{program}` is not installed (or not on PATH; ${env} may name it): the {} \
                         TCK components are built with it (see {})",
                        builder.lang, builder.script
                    ));
                }
            }
            Need::Dir(dir) => {
                if !root.join(dir).is_dir() {
                    missing.push(format!(
                        "{dir} is missing: the {} SDK's build tools are not installed (see {})",
                        builder.lang, builder.script
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "the TCK cannot run for {}:\n  - {}",
            langs.join(", "),
            missing.join("\n  - ")
        );
    }
    Ok(())
}

/// Whether `program --version` runs and succeeds.
fn answers_version(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn languages_from_arguments() {
        assert_eq!(parse_args(&[]).ok(), Some(LANGS.to_vec()));
        assert_eq!(
            parse_args(&args(&["--lang", "js", "--lang=rust"])).ok(),
            Some(vec!["rust", "js"])
        );
        assert_eq!(
            parse_args(&args(&["--lang", "python,python"])).ok(),
            Some(vec!["python"])
        );
        assert!(parse_args(&args(&["--lang", "go"])).is_err());
        assert!(parse_args(&args(&["--lang"])).is_err());
        assert!(parse_args(&args(&["rust"])).is_err());
    }

    #[test]
    fn a_missing_build_script_is_named() {
        for builder in BUILDERS {
            let Err(e) = require_script(Path::new("/nonexistent"), builder) else {
                panic!("{} exists under /nonexistent", builder.script);
            };
            let message = e.to_string();
            assert!(
                message.contains(builder.script) && message.contains(builder.lang),
                "{message}"
            );
        }
    }
}
