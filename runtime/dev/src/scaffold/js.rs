//! `cella new --lang js`: a package with `package.json` (its `name` is the entity type, its
//! `main` the module exporting `entity`, and the SDK copy a `file:` development dependency),
//! `src/index.js` (the entity), `test/index.test.js` (its unit tests, `npm test`) and
//! `.gitignore`.

use std::path::{Path, PathBuf};

use super::{Kind, ensure_empty_dir, validate_project_name, write_project_files};
use crate::{
    error::{Error, Hint, Result},
    sdk::JsSdk,
    toolchain::js::{COMPONENTIZE_JS_VERSION, MIN_NODE_MAJOR},
};

/// `src/index.js` of a new value entity.
const VALUE_TEMPLATE: &str = include_str!("../templates/js_value.js");
/// `test/index.test.js` of a new value entity.
const VALUE_TEST_TEMPLATE: &str = include_str!("../templates/js_value_test.js");
/// `src/index.js` of a new event-sourced entity.
const EVENT_SOURCED_TEMPLATE: &str = include_str!("../templates/js_event_sourced.js");
/// `test/index.test.js` of a new event-sourced entity.
const EVENT_SOURCED_TEST_TEMPLATE: &str = include_str!("../templates/js_event_sourced_test.js");

const GITIGNORE: &str = "/node_modules\n/target\n/.cella\n";

/// Checks `name` as the name of a new JavaScript entity.
fn validate_name(name: &str) -> Result<()> {
    validate_project_name(name, &["cella-sdk", "node_modules"])
}

/// The `package.json` of a new project depending on the SDK copy at `sdk`.
fn project_manifest(name: &str, sdk: &Path) -> Result<String> {
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
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Project {
        message: "cannot write the package.json".to_string(),
        hint: Hint::NONE,
        source: Some(Box::new(e)),
    })?;
    text.push('\n');
    Ok(text)
}

/// Scaffolds the JavaScript entity `name` of `kind` in `dir` (which must not exist or be
/// empty): `package.json`, `src/index.js`, `test/index.test.js` and `.gitignore`. Returns the
/// SDK package's directory.
pub fn new_project(name: &str, kind: Kind, dir: &Path) -> Result<PathBuf> {
    let sdk = crate::sdk::ensure_js_sdk()?;
    write_project(name, kind, dir, &sdk)?;
    Ok(sdk.package)
}

pub(crate) fn write_project(name: &str, kind: Kind, dir: &Path, sdk: &JsSdk) -> Result<()> {
    validate_name(name)?;
    ensure_empty_dir(dir)?;
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
    write_project_files(dir, &files)
}

/// `cella new --lang js`: scaffolds the entity and says what to do next.
pub fn run_new(name: &str, kind: Kind, path: Option<PathBuf>) -> Result<()> {
    validate_name(name)?;
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    let sdk = new_project(name, kind, &dir)?;
    super::announce(
        &format!("created the {} entity `{name}` (JavaScript)", kind.label()),
        &dir,
        "package.json, src/index.js, test/index.test.js, .gitignore",
        &sdk,
        &[
            "npm install   # links the SDK".into(),
            "npm test      # the entity's unit tests".into(),
            "cella dev     # build, serve on http://127.0.0.1:8080, reload on every save".into(),
            format!(
                "cella build   # the component (needs Node.js {MIN_NODE_MAJOR}+; installs \
                 componentize-js {COMPONENTIZE_JS_VERSION} once)"
            ),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::js::{is_project, read_project};

    #[test]
    fn scaffolds_projects() {
        let home = tempfile::tempdir().unwrap();
        let sdk = crate::sdk::write_js_sdk(home.path()).unwrap();
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
        assert!(is_project(&dir));
        let project = read_project(&dir).unwrap();
        assert_eq!(project.name, "ledger");
        assert!(project.entry.ends_with("src/index.js"));

        let again = write_project("ledger", Kind::Value, &dir, &sdk).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        for bad in ["", "Ledger", "2x", "a b", "a/b", "cella-sdk"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
