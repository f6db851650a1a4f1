//! Versioned binary encoding of persisted records: one format-version byte, then postcard.
//! Every record written to disk goes through [`encode`] and is read back with [`decode`].

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Version of the on-disk record format. Bump it (and keep a reader for the old one) whenever
/// a persisted type changes shape.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes a record as `[FORMAT_VERSION] ++ postcard(value)`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_extend(value, vec![FORMAT_VERSION]).map_err(Error::Codec)
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let (&version, rest) = bytes
        .split_first()
        .ok_or_else(|| Error::Corrupt("empty record".into()))?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    postcard::from_bytes(rest).map_err(Error::Codec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JournalEntry, JournalPayload};

    const GOLDEN: &str = "010703632d310361646480d095ffbc31030001077b2261223a317d";

    fn sample() -> JournalEntry {
        JournalEntry {
            seq: 7,
            command_id: "c-1".into(),
            command: "add".into(),
            timestamp_ms: 1_700_000_000_000,
            module_version: 3,
            payload: JournalPayload::Events(vec![b"{\"a\":1}".to_vec()]),
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(decode::<JournalEntry>(&encode(&e).unwrap()).unwrap(), e);
    }

    /// Golden bytes: if this fails, the on-disk format changed and FORMAT_VERSION must move.
    #[test]
    fn golden_journal_entry() {
        let bytes = encode(&sample()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN);
    }

    /// Golden bytes of a type's limits row (`module_limits`).
    #[test]
    fn golden_type_limits() {
        let limits = crate::TypeLimits {
            deadline_ms: Some(250),
            max_concurrent: Some(2),
            cpu_share: None,
        };
        let bytes = encode(&limits).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0101fa01010200");
        assert_eq!(decode::<crate::TypeLimits>(&bytes).unwrap(), limits);
    }

    #[test]
    fn rejects_unknown_version() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = 99;
        assert!(matches!(
            decode::<JournalEntry>(&bytes),
            Err(Error::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            decode::<JournalEntry>(&[]),
            Err(Error::Corrupt(_))
        ));
    }
}
