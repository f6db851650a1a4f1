//! Command decoding: the list of command names, read from the serde enum itself by a probing
//! `Deserializer`, and the decoding of a command name plus a JSON payload into the enum.

use core::fmt;

use serde::de::{self, DeserializeOwned, Visitor};

use crate::bindings::cella::entity::types::Failure;

/// The command names of an externally tagged serde enum, in declaration order (serde aliases
/// included). `None` if `C` is not such an enum.
pub(crate) fn command_names<C: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut probe = Probe { variants: None };
    // The probe always fails once it has seen (or not seen) the enum; only the capture matters.
    let _ = C::deserialize(&mut probe);
    probe.variants
}

/// Decodes command `name` with the JSON text `payload` (empty text counts as `null`) into `C`,
/// as serde would decode `{"<name>": <payload>}`.
pub(crate) fn decode_command<C: DeserializeOwned>(name: &str, payload: &str) -> Result<C, Failure> {
    if let Some(names) = command_names::<C>()
        && !names.contains(&name)
    {
        return Err(Failure::UnknownCommand(name.to_owned()));
    }
    let payload = if payload.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(payload).map_err(|e| {
            Failure::BadRequest(format!(
                "command `{name}`: the payload is not valid JSON: {e}"
            ))
        })?
    };
    let mut tagged = serde_json::Map::new();
    tagged.insert(name.to_owned(), payload);
    serde_json::from_value(serde_json::Value::Object(tagged))
        .map_err(|e| Failure::BadRequest(format!("command `{name}`: {e}")))
}

/// A `Deserializer` that records the variant names serde asks for and then gives up.
struct Probe {
    variants: Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("command probe finished")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeDone
    }
}

impl<'de> de::Deserializer<'de> for &mut Probe {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        self.variants = Some(variants);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Command {
        Add(i64),
        Get,
        SetName {
            name: String,
        },
        #[serde(alias = "clear")]
        ResetAll,
    }

    #[test]
    fn names_come_from_serde() {
        assert_eq!(
            command_names::<Command>(),
            Some(&["add", "get", "set-name", "clear", "reset-all"][..])
        );
    }

    #[test]
    fn non_enums_have_no_names() {
        assert_eq!(command_names::<u32>(), None);
        assert_eq!(command_names::<serde_json::Value>(), None);
    }

    #[test]
    fn decodes_payloads() {
        assert_eq!(
            decode_command::<Command>("add", "5").ok(),
            Some(Command::Add(5))
        );
        assert_eq!(
            decode_command::<Command>("get", "null").ok(),
            Some(Command::Get)
        );
        assert_eq!(
            decode_command::<Command>("get", "").ok(),
            Some(Command::Get)
        );
        assert_eq!(
            decode_command::<Command>("clear", " null ").ok(),
            Some(Command::ResetAll)
        );
        assert_eq!(
            decode_command::<Command>("set-name", r#"{"name":"x"}"#).ok(),
            Some(Command::SetName { name: "x".into() })
        );
    }

    #[test]
    fn unknown_commands_and_bad_payloads() {
        assert!(matches!(
            decode_command::<Command>("nope", "null"),
            Err(Failure::UnknownCommand(name)) if name == "nope"
        ));
        assert!(matches!(
            decode_command::<Command>("add", "\"x\""),
            Err(Failure::BadRequest(msg)) if msg.starts_with("command `add`: invalid type")
        ));
        assert!(matches!(
            decode_command::<Command>("add", "{"),
            Err(Failure::BadRequest(msg)) if msg.contains("not valid JSON")
        ));
        assert!(matches!(
            decode_command::<Command>("get", "3"),
            Err(Failure::BadRequest(msg)) if msg.starts_with("command `get`")
        ));
    }
}
