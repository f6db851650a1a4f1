//! `cargo xtask tck [--lang rust|python|js]`: builds the TCK components (tests/tck/SPEC.md) of
//! the chosen guest languages (default: all three) into `target/components/<lang>/` and runs
//! the TCK suite, `tests/tests/tck.rs`, against them. The languages' toolchains are installed
//! first where missing (see [`crate::toolchains`]); `cargo xtask ci` runs it for every language.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{build, ci, toolchains, workspace_root};

/// A guest language of the TCK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// Every language, in the order the suite runs them.
    pub const ALL: &[Lang] = &[Lang::Rust, Lang::Python, Lang::Js];

    /// The name the suite and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The languages `chosen` names, each once and in the suite's order; all of them if
    /// `chosen` is empty.
    pub fn selection(chosen: &[Lang]) -> Vec<Lang> {
        if chosen.is_empty() {
            return Lang::ALL.to_vec();
        }
        Lang::ALL
            .iter()
            .copied()
            .filter(|lang| chosen.contains(lang))
            .collect()
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a language other than Rust builds its TCK components.
struct Builder {
    lang: Lang,
    /// The program that runs the build script.
    program: &'static str,
    /// The build script, relative to the workspace root; it takes the output directory.
    script: &'static str,
}

const BUILDERS: &[Builder] = &[
    Builder {
        lang: Lang::Python,
        program: "python3",
        script: "sdk-guest/python/build_examples.py",
    },
    Builder {
        lang: Lang::Js,
        program: "node",
        script: "sdk-guest/js/build-examples.mjs",
    },
];

/// `cargo xtask tck`: builds and runs the TCK for `langs`, then prints the totals.
pub fn tck(langs: &[Lang]) -> anyhow::Result<()> {
    prepare(langs)?;
    let mut totals = [0u64; 3];
    run(langs, &mut totals)?;
    ci::print_totals("TCK tests", &totals)
}

/// Builds the TCK components of `langs` and runs the suite for them, adding its counts to
/// `totals` (passed, failed, ignored).
pub fn run(langs: &[Lang], totals: &mut [u64; 3]) -> anyhow::Result<()> {
    for lang in langs {
        build_components(*lang)?;
    }
    let selection = langs
        .iter()
        .map(|lang| lang.name())
        .collect::<Vec<_>>()
        .join(",");
    println!("\nrunning the TCK for {selection}");
    ci::cargo_test(
        &["test", "-p", "cella-tests", "--test", "tck"],
        &[("CELLA_TCK_LANGS", selection.as_str())],
        totals,
    )
}

/// Builds one language's TCK components into `target/components/<lang>/`.
fn build_components(lang: Lang) -> anyhow::Result<()> {
    let Some(builder) = BUILDERS.iter().find(|b| b.lang == lang) else {
        // Rust: the examples and the Rust models are guests of the workspace.
        return build::build_examples().map(|_| ());
    };
    let root = workspace_root();
    let script = require_script(&root, builder)?;
    let out = build::target_dir(&root)
        .join("components")
        .join(lang.name());
    println!("$ {} {} {}", builder.program, builder.script, out.display());
    let status = toolchains::configure(&mut Command::new(builder.program))
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

/// Gets `langs` ready to build: every build script is there and every toolchain is installed
/// (see [`toolchains::ensure_guests`]), so that a missing one fails loudly before anything is
/// built (the TCK never skips a language).
pub fn prepare(langs: &[Lang]) -> anyhow::Result<()> {
    let root = workspace_root();
    let missing: Vec<String> = BUILDERS
        .iter()
        .filter(|b| langs.contains(&b.lang))
        .filter_map(|b| require_script(&root, b).err())
        .map(|e| e.to_string())
        .collect();
    if !missing.is_empty() {
        bail!("the TCK cannot run:\n  - {}", missing.join("\n  - "));
    }
    toolchains::ensure_guests(langs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_build_script_is_named() {
        for builder in BUILDERS {
            let Err(e) = require_script(Path::new("/nonexistent"), builder) else {
                panic!("{} exists under /nonexistent", builder.script);
            };
            let message = e.to_string();
            assert!(
                message.contains(builder.script) && message.contains(builder.lang.name()),
                "{message}"
            );
        }
    }
}
