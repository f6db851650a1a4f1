//! `cella new --lang python`: a directory with `app.py` (the entity, ending in
//! `Entity = cella.export(...)`), `test_app.py` (its unit tests, run with plain
//! `python3 -m unittest` against the Python SDK copy) and `.gitignore`. The directory's name is
//! the entity type `cella dev` deploys it as.

use std::path::{Path, PathBuf};

use super::{Kind, ensure_empty_dir, validate_project_name, write_project_files};
use crate::{
    error::{Error, Hint, Result},
    sdk::PythonSdk,
    toolchain::python::COMPONENTIZE_PY_VERSION,
};

/// `app.py` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("../templates/python_value.py");
/// `test_app.py` of a new value entity.
const VALUE_TEST_TEMPLATE: &str = include_str!("../templates/python_value_test.py");
/// `app.py` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("../templates/python_event_sourced.py");
/// `test_app.py` of a new event-sourced entity.
const EVENT_SOURCED_TEST_TEMPLATE: &str = include_str!("../templates/python_event_sourced_test.py");

const GITIGNORE: &str = "/target\n/.cella\n__pycache__/\n";

/// Checks `name` as the name of a new Python entity.
fn validate_name(name: &str) -> Result<()> {
    validate_project_name(name, &[])
}

/// Scaffolds the Python entity `name` of `kind` in `dir` (which must not exist or be empty):
/// `app.py`, `test_app.py` and `.gitignore`. Returns the SDK's module directory.
pub fn new_project(name: &str, kind: Kind, dir: &Path) -> Result<PathBuf> {
    let sdk = crate::sdk::ensure_python_sdk()?;
    write_project(name, kind, dir, &sdk)?;
    Ok(sdk.python)
}

pub(crate) fn write_project(name: &str, kind: Kind, dir: &Path, sdk: &PythonSdk) -> Result<()> {
    validate_name(name)?;
    ensure_empty_dir(dir)?;
    let (app, test) = match kind {
        Kind::Value => (VALUE_TEMPLATE, VALUE_TEST_TEMPLATE),
        Kind::EventSourced => (EVENT_SOURCED_TEMPLATE, EVENT_SOURCED_TEST_TEMPLATE),
    };
    // A JSON string is a valid Python string literal.
    let sdk_literal =
        serde_json::to_string(&sdk.python.to_string_lossy()).map_err(|e| Error::Project {
            message: format!("cannot quote the SDK path {}", sdk.python.display()),
            hint: Hint::NONE,
            source: Some(Box::new(e)),
        })?;
    let files = [
        ("app.py", app.replace("{{name}}", name)),
        (
            "test_app.py",
            test.replace("{{name}}", name)
                .replace("{{sdk}}", &sdk_literal),
        ),
        (".gitignore", GITIGNORE.to_string()),
    ];
    write_project_files(dir, &files)
}

/// `cella new --lang python`: scaffolds the entity and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> Result<()> {
    validate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let sdk = new_project(name, kind, &dir)?;
    super::announce(
        &format!("created the {} entity `{name}` (Python)", kind.label()),
        &dir,
        "app.py, test_app.py, .gitignore",
        &sdk,
        &[
            "cella dev             # build, serve on http://127.0.0.1:8080, reload on every save"
                .into(),
            "python3 -m unittest   # the entity's unit tests".into(),
            format!(
                "cella build           # the component (needs componentize-py \
                 {COMPONENTIZE_PY_VERSION})"
            ),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffolds_projects() {
        let home = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::write_python_sdk(home.path()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("ledger");
        write_project("ledger", Kind::EventSourced, &dir, &sdk).unwrap();
        let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
        assert!(app.contains("entities/ledger/alice"), "{app}");
        assert!(app.contains("Entity = cella.export(Ledger)"), "{app}");
        let test = std::fs::read_to_string(dir.join("test_app.py")).unwrap();
        let literal = serde_json::to_string(&sdk.python.to_string_lossy()).unwrap();
        assert!(
            test.contains(&format!("sys.path.append({literal})")),
            "{test}"
        );
        assert!(!app.contains("{{") && !test.contains("{{"));
        assert!(crate::toolchain::python::is_project(&dir));

        let again = write_project("ledger", Kind::Value, &dir, &sdk).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        for bad in ["", "Ledger", "2x", "a b", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
