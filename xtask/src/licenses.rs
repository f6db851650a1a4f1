//! `cargo xtask licenses`, also run early by `cargo xtask ci`: every dependency's licence must
//! be compatible with Apache-2.0, the project's licence. Read without extra tools:
//!
//! - Cargo: the `license` SPDX expression of every package in the resolved graph of
//!   `cargo metadata` (every target platform, so the wasm guests' and other platforms'
//!   dependencies too). The workspace's own packages must say `Apache-2.0`.
//! - npm: the `license` of every package in `sdk-guest/js/package-lock.json` (the JavaScript
//!   SDK's build tools) and `tests/browser/package-lock.json` (the console's browser tests).
//!
//! An expression passes if it allows using the package under licences of [`ALLOWED`] alone:
//! `A OR B` if either does, `A AND B` if both do, `A WITH E` if `A` does and `E` is in
//! [`ALLOWED_EXCEPTIONS`]. A package whose licence is missing (Cargo's `license_file` only) or
//! not allowed fails the check unless [`EXCEPTIONS`] names it with the reason it is acceptable.
//!
//! MPL-2.0 is deliberately not in [`ALLOWED`]: it is weak copyleft, per file (modified MPL files
//! must be published under the MPL), which fits an Apache-2.0 project that uses such a package
//! unmodified, but is a decision to take per package, in [`EXCEPTIONS`], not by default. The
//! same holds for the LGPL and anything stronger.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use anyhow::{Context, bail};
use serde_json::Value;

/// SPDX identifiers of licences compatible with Apache-2.0: permissive, no copyleft.
pub const ALLOWED: &[&str] = &[
    "Apache-2.0",
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "BSL-1.0",
    "0BSD",
    "Unlicense",
    "CDLA-Permissive-2.0",
    "BlueOak-1.0.0",
];

/// SPDX licence exceptions (`A WITH E`) that only grant more than `A` does.
pub const ALLOWED_EXCEPTIONS: &[&str] = &["LLVM-exception"];

/// Where a package comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    Cargo,
    Npm,
}

/// A package accepted although its licence metadata does not pass, and why.
pub struct Exception {
    pub ecosystem: Ecosystem,
    pub name: &'static str,
    pub reason: &'static str,
}

/// Packages accepted by name, each with its reason.
pub const EXCEPTIONS: &[Exception] = &[Exception {
    ecosystem: Ecosystem::Npm,
    name: "@bytecodealliance/componentize-js",
    reason: "its package.json has no `license` field; its LICENSE file is the Apache License \
             2.0 with the LLVM exception (Bytecode Alliance), as for jco and the other \
             @bytecodealliance packages",
}];

/// One package as the check sees it.
#[derive(Debug)]
struct Package {
    ecosystem: Ecosystem,
    name: String,
    version: String,
    /// The SPDX expression, if the package gives one.
    license: Option<String>,
    /// One of the workspace's own packages (they must say `Apache-2.0`).
    own: bool,
}

/// Runs the check over the workspace at `root` and prints a summary; fails listing every
/// package that does not pass.
pub fn check(root: &Path) -> anyhow::Result<()> {
    println!(
        "checking dependency licences (allowed: {})",
        ALLOWED.join(", ")
    );
    let mut packages = cargo_packages(root)?;
    packages.extend(npm_packages(&root.join("sdk-guest/js/package-lock.json"))?);
    packages.extend(npm_packages(&root.join("tests/browser/package-lock.json"))?);
    let report = judge(&packages);
    for (ecosystem, counts) in &report.counts {
        let total: usize = counts.values().sum();
        println!("{ecosystem:?}: {total} packages");
        let mut by_count: Vec<_> = counts.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (license, n) in by_count {
            println!("  {n:>4}  {license}");
        }
    }
    for (exception, packages) in &report.excepted {
        println!(
            "accepted by exception: {:?} {} ({}): {}",
            exception.ecosystem,
            exception.name,
            packages.join(", "),
            exception.reason
        );
    }
    for exception in EXCEPTIONS {
        if !report
            .excepted
            .iter()
            .any(|(e, _)| std::ptr::eq(*e, exception))
        {
            println!(
                "warning: the exception for {:?} {} matches no failing package: remove it from \
                 xtask/src/licenses.rs",
                exception.ecosystem, exception.name
            );
        }
    }
    if !report.failures.is_empty() {
        for failure in &report.failures {
            eprintln!("{failure}");
        }
        bail!(
            "{} package(s) with a licence not known to be compatible with Apache-2.0\nhint: \
             replace the dependency, or, if its licence is acceptable after all, add it to \
             ALLOWED or EXCEPTIONS (with the reason) in xtask/src/licenses.rs",
            report.failures.len()
        );
    }
    println!("licences: ok");
    Ok(())
}

#[derive(Default)]
struct Report {
    /// Per ecosystem, packages per licence expression.
    counts: BTreeMap<Ecosystem, BTreeMap<String, usize>>,
    /// The exceptions that applied, with the packages they accepted.
    excepted: Vec<(&'static Exception, Vec<String>)>,
    /// One line per failing package.
    failures: Vec<String>,
}

fn judge(packages: &[Package]) -> Report {
    let mut report = Report::default();
    for p in packages {
        let shown = p.license.as_deref().unwrap_or("(none)");
        *report
            .counts
            .entry(p.ecosystem)
            .or_default()
            .entry(shown.to_owned())
            .or_default() += 1;
        let problem = match &p.license {
            _ if p.own && p.license.as_deref() != Some("Apache-2.0") => Some(format!(
                "a package of the project's own must say `license = \"Apache-2.0\"`, not `{shown}`"
            )),
            _ if p.own => None,
            None => Some("no SPDX `license` (a licence file only?)".to_owned()),
            Some(expr) => match allowed(expr) {
                Ok(true) => None,
                Ok(false) => Some(format!("`{expr}` is not allowed")),
                Err(e) => Some(format!("`{expr}` does not parse: {e}")),
            },
        };
        let Some(problem) = problem else { continue };
        let exception = EXCEPTIONS
            .iter()
            .find(|e| !p.own && e.ecosystem == p.ecosystem && e.name == p.name);
        let id = format!("{} {}", p.name, p.version);
        match exception {
            Some(exception) => match report
                .excepted
                .iter_mut()
                .find(|(e, _)| std::ptr::eq(*e, exception))
            {
                Some((_, accepted)) => accepted.push(id),
                None => report.excepted.push((exception, vec![id])),
            },
            None => report
                .failures
                .push(format!("{:?} {id}: {problem}", p.ecosystem)),
        }
    }
    report
}

/// The packages of the resolved Cargo graph, every platform.
fn cargo_packages(root: &Path) -> anyhow::Result<Vec<Package>> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let ids = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect()
    };
    let own = ids(&metadata["workspace_members"]);
    let resolved: BTreeSet<String> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| node["id"].as_str().map(str::to_owned))
        .collect();
    let packages: Vec<Package> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"].as_str().is_some_and(|id| resolved.contains(id)))
        .map(|p| Package {
            ecosystem: Ecosystem::Cargo,
            name: p["name"].as_str().unwrap_or("?").to_owned(),
            version: p["version"].as_str().unwrap_or("?").to_owned(),
            license: p["license"].as_str().map(str::to_owned),
            own: p["id"].as_str().is_some_and(|id| own.contains(id)),
        })
        .collect();
    if packages.is_empty() {
        bail!("cargo metadata lists no packages");
    }
    Ok(packages)
}

/// The packages of an npm lockfile (version 2 or 3); the root package is the project's own.
fn npm_packages(lockfile: &Path) -> anyhow::Result<Vec<Package>> {
    let text = std::fs::read_to_string(lockfile)
        .with_context(|| format!("cannot read {}", lockfile.display()))?;
    let lock: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", lockfile.display()))?;
    let Some(packages) = lock["packages"].as_object() else {
        bail!(
            "{} has no `packages` (lockfile version 2 or later is needed)",
            lockfile.display()
        );
    };
    Ok(packages
        .iter()
        .map(|(path, p)| {
            // `node_modules/a/node_modules/@scope/b` is `@scope/b`, unless `name` says
            // otherwise (an alias installs a package under another directory name).
            let dir = path
                .rsplit_once("node_modules/")
                .map_or(path.as_str(), |(_, d)| d);
            Package {
                ecosystem: Ecosystem::Npm,
                name: p["name"].as_str().unwrap_or(dir).to_owned(),
                version: p["version"].as_str().unwrap_or("?").to_owned(),
                license: p["license"].as_str().map(str::to_owned),
                own: path.is_empty(),
            }
        })
        .collect())
}

/// Whether the SPDX expression `expr` allows use under [`ALLOWED`] licences alone. `/` is read
/// as `OR` (older Cargo manifests write `MIT/Apache-2.0`); operators in any case.
pub fn allowed(expr: &str) -> Result<bool, String> {
    let spaced = expr
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut parser = Parser { tokens, at: 0 };
    let verdict = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(verdict),
        Some(token) => Err(format!("unexpected `{token}`")),
    }
}

/// Recursive descent over SPDX tokens, evaluating as it goes: `or := and (OR and)*`,
/// `and := term (AND term)*`, `term := ( or ) | id [WITH exception]`.
struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let token = self.tokens.get(self.at).copied();
        self.at += 1;
        token
    }

    fn peek_is(&self, keyword: &str) -> bool {
        self.tokens
            .get(self.at)
            .is_some_and(|t| t.eq_ignore_ascii_case(keyword))
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut verdict = self.and()?;
        while self.peek_is("OR") {
            self.at += 1;
            verdict |= self.and()?;
        }
        Ok(verdict)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut verdict = self.term()?;
        while self.peek_is("AND") {
            self.at += 1;
            verdict &= self.term()?;
        }
        Ok(verdict)
    }

    fn term(&mut self) -> Result<bool, String> {
        match self.next() {
            None => Err("the expression ends early".to_owned()),
            Some("(") => {
                let verdict = self.or()?;
                match self.next() {
                    Some(")") => Ok(verdict),
                    _ => Err("a `(` is not closed".to_owned()),
                }
            }
            Some(token)
                if token == ")" || ["AND", "OR", "WITH"].contains(&&*token.to_uppercase()) =>
            {
                Err(format!("`{token}` where a licence should be"))
            }
            Some(id) => {
                // `GPL-2.0+` is "this version or later": as allowed as the version itself.
                let license_ok = ALLOWED.contains(&id.trim_end_matches('+'));
                if !self.peek_is("WITH") {
                    return Ok(license_ok);
                }
                self.at += 1;
                let exception = self.next().ok_or("`WITH` names no exception")?;
                Ok(license_ok && ALLOWED_EXCEPTIONS.contains(&exception))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        for ok in [
            "MIT",
            "MIT OR Apache-2.0",
            "Apache-2.0 WITH LLVM-exception",
            "Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT",
            "(Apache-2.0 OR MIT) AND BSD-3-Clause",
            "MIT/Apache-2.0",
            "Apache-2.0 / MIT",
            "MIT OR Apache-2.0 OR LGPL-2.1-or-later",
            "(Apache-2.0 WITH LLVM-exception)",
            "mit or Apache-2.0",
        ] {
            assert_eq!(allowed(ok), Ok(true), "{ok}");
        }
        for not_ok in [
            "GPL-3.0",
            "MIT AND GPL-3.0",
            "MPL-2.0",
            "(MIT OR Apache-2.0) AND LGPL-2.1",
            "GPL-2.0 WITH Classpath-exception-2.0",
            "Apache-2.0 WITH Some-unknown-exception",
        ] {
            assert_eq!(allowed(not_ok), Ok(false), "{not_ok}");
        }
        for malformed in [
            "",
            "MIT OR",
            "(MIT",
            "MIT)",
            "AND MIT",
            "MIT Apache-2.0",
            "MIT WITH",
        ] {
            assert!(allowed(malformed).is_err(), "{malformed}");
        }
    }

    fn package(name: &str, license: Option<&str>, own: bool) -> Package {
        Package {
            ecosystem: Ecosystem::Cargo,
            name: name.to_owned(),
            version: "1.0.0".to_owned(),
            license: license.map(str::to_owned),
            own,
        }
    }

    #[test]
    fn failures_name_the_package() {
        let report = judge(&[
            package("fine", Some("MIT OR Apache-2.0"), false),
            package("copyleft", Some("GPL-3.0-only"), false),
            package("file-only", None, false),
            package("ours", Some("MIT"), true),
            package("ours-too", Some("Apache-2.0"), true),
        ]);
        assert_eq!(report.failures.len(), 3, "{:?}", report.failures);
        for name in ["copyleft 1.0.0", "file-only 1.0.0", "ours 1.0.0"] {
            assert!(
                report.failures.iter().any(|f| f.contains(name)),
                "{name} is not reported: {:?}",
                report.failures
            );
        }
    }

    #[test]
    fn exceptions_accept_by_name_and_ecosystem() {
        let Some(exception) = EXCEPTIONS.first() else {
            return;
        };
        let mut p = package(exception.name, None, false);
        p.ecosystem = exception.ecosystem;
        let report = judge(&[p]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.excepted.len(), 1);
        let other = if exception.ecosystem == Ecosystem::Npm {
            Ecosystem::Cargo
        } else {
            Ecosystem::Npm
        };
        let mut p = package(exception.name, None, false);
        p.ecosystem = other;
        assert_eq!(judge(&[p]).failures.len(), 1);
    }
}
