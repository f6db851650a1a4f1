//! The OpenAPI 3.1 document of the node's HTTP API: `openapi.json` beside this file, embedded
//! and served at `GET /v1/openapi.json`. It is kept by hand and held true by the tests below:
//! the document and [`ROUTE_TABLE`](super::ROUTE_TABLE) name the same routes (method and path),
//! each operation declares its path's parameters, every `$ref` resolves, and the error codes it
//! declares are exactly the node's ([`crate::error::CODES`]), each under the status the node
//! answers it with. `tests/tests/openapi.rs` checks real answers against its schemas.

/// The document, as served.
pub(super) const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::{super::ROUTE_TABLE, super::ROUTES, DOCUMENT};
    use crate::error::CODES;

    const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is not JSON")
    }

    /// A route's path in OpenAPI's spelling: matchit's catch-all `{*file}` is `{file}`.
    fn openapi_path(path: &str) -> String {
        path.replace("{*", "{")
    }

    /// Follows a local `$ref` (`#/components/...`), or `value` itself when it is none.
    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("`{reference}` does not resolve")),
            None => value,
        }
    }

    /// Every operation: (method, path, operation).
    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                if METHODS.contains(&method.as_str()) {
                    out.push((method.clone(), path.clone(), operation));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_and_the_route_table_name_the_same_routes() {
        let doc = document();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let served: BTreeSet<(String, String)> = ROUTE_TABLE
            .iter()
            .map(|(method, path, _)| (method.as_str().to_lowercase(), openapi_path(path)))
            .collect();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "runtime/node/src/http/openapi.json and ROUTE_TABLE (http/mod.rs) differ:\n\
             served but not documented: {undocumented:?}\n\
             documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn every_row_of_the_route_table_is_served_by_its_tree() {
        let routes = ROUTES.as_ref().unwrap();
        for (method, path, endpoint) in ROUTE_TABLE {
            let tree = routes
                .tree(method)
                .unwrap_or_else(|| panic!("no tree for {method} {path}"));
            // Each parameter filled with a sample segment.
            let sample: String = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "x"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let matched = tree.at(&sample).map(|m| *m.value);
            assert_eq!(matched, Ok(*endpoint), "{method} {path} (as {sample})");
        }
    }

    #[test]
    fn every_operation_declares_its_path_parameters() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations(&doc) {
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(String::from)
                .collect();
            let declared: BTreeSet<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("a parameter's name").to_string())
                .collect();
            assert_eq!(in_path, declared, "{method} {path}: path parameters");
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(
                ids.insert(id.to_string()),
                "operationId `{id}` is used twice"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, value: &Value, broken: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(reference) = map.get("$ref").and_then(Value::as_str)
                        && doc.pointer(reference.trim_start_matches('#')).is_none()
                    {
                        broken.push(reference.to_string());
                    }
                    map.values().for_each(|v| walk(doc, v, broken));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v, broken)),
                _ => {}
            }
        }
        let doc = document();
        let mut broken = Vec::new();
        walk(&doc, &doc, &mut broken);
        assert!(
            broken.is_empty(),
            "references that do not resolve: {broken:?}"
        );
    }

    #[test]
    fn the_error_codes_are_the_nodes_each_under_its_status() {
        let doc = document();
        let node: BTreeMap<&str, u16> = CODES.iter().copied().collect();
        let declared: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the ErrorCode enum")
            .iter()
            .map(|c| c.as_str().expect("a code"))
            .collect();
        let known: BTreeSet<&str> = node.keys().copied().collect();
        assert_eq!(
            declared, known,
            "ErrorCode in openapi.json and error::CODES differ"
        );
        // Every error answer of every operation names codes the node answers with its status.
        for (method, path, operation) in operations(&doc) {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let Ok(status) = status.parse::<u16>() else {
                    continue;
                };
                if status < 400 {
                    continue;
                }
                let schema = &resolve(&doc, response)["content"]["application/json"]["schema"];
                let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no code enum"));
                assert_eq!(schema["allOf"][0]["$ref"], "#/components/schemas/Error");
                for code in codes {
                    let code = code.as_str().expect("a code");
                    assert_eq!(
                        node.get(code),
                        Some(&status),
                        "{method} {path}: `{code}` is documented under {status}"
                    );
                }
            }
        }
    }
}
