//! `cella new`: a new entity project with a working entity and its unit tests, in Rust
//! ([`rust`]: a crate), Python ([`python`]: `app.py`) or JavaScript ([`js`]: a package). This
//! module holds what they share: the entity [`Kind`], the rules for names, and writing a new
//! project's files into an empty directory. Projects depend on the SDK copies of
//! [`crate::sdk`] by absolute path, so they build anywhere, standalone.

use std::path::Path;

use crate::error::{Error, Result};

pub mod js;
pub mod python;
pub mod rust;

pub use rust::{Created, new_crate, validate_crate_name};

/// The kind of entity `cella new` scaffolds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// State persisted whole; the handler mutates it (a counter).
    Value,
    /// Commands emit events; the state is their fold (a ledger).
    EventSourced,
}

impl Kind {
    /// `value` or `event-sourced`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::EventSourced => "event-sourced",
        }
    }
}

/// Prints what `cella new` made — `headline` in `dir`, its `files`, the SDK copy it builds
/// against — and the `next` steps, after changing into `dir`.
pub(crate) fn announce(headline: &str, dir: &Path, files: &str, sdk: &Path, next: &[String]) {
    println!("{headline} in {}", dir.display());
    println!("  {files}");
    println!("  SDK: {}", sdk.display());
    println!("next:");
    println!("  cd {}", dir.display());
    for step in next {
        println!("  {step}");
    }
}

/// The hint of every name rule.
const NAME_HINT: &str =
    "use lowercase ASCII letters, digits, `-` and `_`, starting with a letter (e.g. `my-counter`)";

/// Fails unless `dir` is missing or an empty directory, so a scaffold never overwrites.
pub(crate) fn ensure_empty_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(Error::project(
            format!("{} exists and is not a directory", dir.display()),
            "choose another name or --path",
        ));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| {
        Error::io(
            format_args!("cannot read the directory {}", dir.display()),
            e,
            "choose another name or --path".into(),
        )
    })?;
    if entries.next().is_some() {
        return Err(Error::project(
            format!(
                "{} already exists and is not empty; nothing was written",
                dir.display()
            ),
            "choose another name, or a new directory with --path DIR",
        ));
    }
    Ok(())
}

/// Writes a new project's `files` (paths relative to `dir`), creating directories.
pub(crate) fn write_project_files(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::create_dir(parent, e))?;
        }
        std::fs::write(&path, contents).map_err(|e| Error::write(&path, e))?;
    }
    Ok(())
}

/// Checks the name of a new Python or JavaScript entity (its directory and entity type):
/// lowercase ASCII letters, digits, `-` and `_`, starting with a letter, at most 64
/// characters, and none of `reserved`.
pub(crate) fn validate_project_name(name: &str, reserved: &[&str]) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::name(
            "the name must be 1 to 64 characters long",
            NAME_HINT,
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(Error::name(
            format!("`{name}` contains the character {c:?}"),
            NAME_HINT,
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::name(
            format!("`{name}` must start with a letter"),
            NAME_HINT,
        ));
    }
    if reserved.contains(&name) {
        return Err(Error::name(format!("`{name}` is reserved"), NAME_HINT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for ok in ["counter", "my-counter", "cart_2"] {
            assert!(validate_project_name(ok, &[]).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "1 to 64"),
            ("Ledger", "character 'L'"),
            ("2x", "start with a letter"),
            ("a b", "character ' '"),
            ("a/b", "character '/'"),
            ("cella-sdk", "reserved"),
        ] {
            let error = validate_project_name(bad, &["cella-sdk"]).unwrap_err();
            assert!(error.to_string().contains(says), "{bad}: {error}");
            assert_eq!(error.hint(), Some(NAME_HINT));
        }
    }

    #[test]
    fn only_empty_or_missing_directories_are_scaffolded() {
        let work = tempfile::tempdir().unwrap();
        assert!(ensure_empty_dir(&work.path().join("new")).is_ok());
        assert!(ensure_empty_dir(work.path()).is_ok());
        std::fs::write(work.path().join("f"), "").unwrap();
        let error = ensure_empty_dir(work.path()).unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
        let error = ensure_empty_dir(&work.path().join("f"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a directory"), "{error}");
    }
}
