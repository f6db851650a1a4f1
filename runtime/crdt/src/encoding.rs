//! The binary form of states and deltas, for storing them and sending them between nodes:
//! one format-version byte, then postcard. Golden-tested: a change to any type's shape changes
//! the bytes, and must move [`FORMAT_VERSION`] (keeping a reader for the old version).

use crate::{Crdt, Error};

/// The version of the encoding this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

impl Crdt {
    /// Encodes this state or delta as `[FORMAT_VERSION] ++ postcard`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        postcard::to_extend(self, vec![FORMAT_VERSION]).map_err(Error::Codec)
    }

    /// Decodes bytes written by [`Crdt::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Crdt, Error> {
        let (&version, body) = bytes.split_first().ok_or(Error::Empty)?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        postcard::from_bytes(body).map_err(Error::Codec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Op};
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One sample of every kind, each with a few operations by two replicas.
    fn samples() -> Vec<Crdt> {
        let ops: [(Kind, Vec<Op>); 8] = [
            (Kind::GCounter, vec![Op::Increment(3)]),
            (Kind::PNCounter, vec![Op::Increment(3), Op::Decrement(1)]),
            (Kind::GSet, vec![Op::Add(json!("x"))]),
            (
                Kind::ORSet,
                vec![Op::Add(json!(1)), Op::Add(json!(2)), Op::Remove(json!(1))],
            ),
            (
                Kind::LWWRegister,
                vec![Op::Set {
                    value: json!({"b": 1, "a": 2}),
                    timestamp: 1000,
                }],
            ),
            (Kind::Flag, vec![Op::Enable]),
            (
                Kind::ORMap,
                vec![
                    Op::Update("n".into(), Box::new(Op::Increment(2))),
                    Op::Update("s".into(), Box::new(Op::Add(json!(true)))),
                    Op::Delete("s".into()),
                ],
            ),
            (Kind::Vote, vec![Op::Vote(true)]),
        ];
        ops.into_iter()
            .map(|(kind, ops)| {
                let mut crdt = Crdt::new(kind);
                for (i, op) in ops.iter().enumerate() {
                    crdt.apply(if i % 2 == 0 { "n1" } else { "n2" }, op)
                        .unwrap();
                }
                crdt
            })
            .collect()
    }

    /// Golden bytes per kind: if one fails, the encoding changed and FORMAT_VERSION must move.
    const GOLDEN: [&str; 8] = [
        "010001026e3103",
        "010101026e310301026e3201",
        "01020103227822",
        "010301013201026e320102026e3101026e320100",
        "010401e807026e310d7b2261223a322c2262223a317d",
        "01050101026e310101026e310100",
        "010601016e01026e310102026e3101026e32010002016e0101026e31020001730301047472756501026e320101026e320100",
        "010701026e310101",
    ];

    #[test]
    fn golden_bytes() {
        for (crdt, golden) in samples().iter().zip(GOLDEN) {
            assert_eq!(hex(&crdt.encode().unwrap()), golden, "{:?}", crdt.kind());
        }
    }

    #[test]
    fn round_trip_of_states_and_deltas() {
        for crdt in samples() {
            assert_eq!(Crdt::decode(&crdt.encode().unwrap()).unwrap(), crdt);
            let delta = crdt
                .delta("n3", &Op::Clear)
                .unwrap_or(Crdt::new(crdt.kind()));
            assert_eq!(Crdt::decode(&delta.encode().unwrap()).unwrap(), delta);
        }
    }

    /// A map nested `depth` deep, holding a counter.
    fn nested(depth: usize) -> Crdt {
        let mut op = Op::Increment(1);
        for _ in 1..depth {
            op = Op::Update("k".into(), Box::new(op));
        }
        let mut map = Crdt::new(Kind::ORMap);
        map.apply("n1", &Op::Update("k".into(), Box::new(op)))
            .unwrap();
        map
    }

    #[test]
    fn maps_nest_up_to_a_limit() {
        let deep = nested(crate::MAX_MAP_NESTING as usize);
        assert_eq!(Crdt::decode(&deep.encode().unwrap()).unwrap(), deep);
        let too_deep = nested(crate::MAX_MAP_NESTING as usize + 1);
        let error = Crdt::decode(&too_deep.encode().unwrap()).unwrap_err();
        assert!(matches!(error, Error::Codec(_)), "{error:?}");
        // The limit is per decode: a refused one leaves the next one unaffected.
        assert_eq!(Crdt::decode(&deep.encode().unwrap()).unwrap(), deep);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(matches!(Crdt::decode(&[]), Err(Error::Empty)));
        assert!(matches!(
            Crdt::decode(&[2, 0]),
            Err(Error::UnsupportedVersion {
                found: 2,
                expected: 1
            })
        ));
        assert!(matches!(Crdt::decode(&[1, 99]), Err(Error::Codec(_))));
    }
}
