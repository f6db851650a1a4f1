//! Opaque JSON values held by sets and registers, in a canonical text form: objects' keys
//! sorted, no whitespace. Two equal JSON values have one text, so they are one set element,
//! and the text orders elements (a set reads back as an array sorted by it). The text form also
//! lets the binary encoding (postcard, which cannot carry a self-describing `Value`) store them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON value in canonical text form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Element(String);

impl Element {
    /// The canonical form of `value`.
    pub fn new(value: &Value) -> Self {
        let mut text = String::new();
        write_canonical(value, &mut text);
        Element(text)
    }

    /// The JSON value back. Text that is not JSON (only possible from hand-made bytes) reads
    /// as a JSON string holding it.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or_else(|_| Value::String(self.0.clone()))
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Value> for Element {
    fn from(value: &Value) -> Self {
        Element::new(value)
    }
}

impl From<Value> for Element {
    fn from(value: Value) -> Self {
        Element::new(&value)
    }
}

/// Appends `value`'s canonical JSON text to `out`.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_have_one_form() {
        let a = Element::new(&json!({"b": [1, {"d": 2, "c": 3}], "a": "x"}));
        assert_eq!(a.as_str(), r#"{"a":"x","b":[1,{"c":3,"d":2}]}"#);
        assert_eq!(a.value(), json!({"a": "x", "b": [1, {"c": 3, "d": 2}]}));
        assert_eq!(Element::new(&json!("s")).as_str(), "\"s\"");
    }
}
