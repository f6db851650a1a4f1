//! The merge laws, property-tested for every kind on states reached by random histories:
//! merge is commutative, associative and idempotent; the deltas of a history, merged in any
//! order and with duplicates, give the same state as merging the replicas' full states; and
//! every state survives the binary encoding.

mod common;

use cella_crdt::{Crdt, Kind};
use common::{history, join, join_all, play};
use proptest::prelude::*;

/// The law tests for one kind, in a module named after it.
macro_rules! laws {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            const KIND: Kind = $kind;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(200))]

                #[test]
                fn merge_is_commutative(events in history(KIND, 40)) {
                    let p = play(KIND, &events);
                    let (a, b) = (&p.states[0], &p.states[1]);
                    prop_assert_eq!(join(a, b), join(b, a));
                }

                #[test]
                fn merge_is_associative(events in history(KIND, 40)) {
                    let p = play(KIND, &events);
                    let (a, b, c) = (&p.states[0], &p.states[1], &p.states[2]);
                    prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
                }

                #[test]
                fn merge_is_idempotent(events in history(KIND, 40)) {
                    let p = play(KIND, &events);
                    let (a, b) = (&p.states[0], &p.states[1]);
                    prop_assert_eq!(&join(a, a), a);
                    let ab = join(a, b);
                    prop_assert_eq!(join(&ab, b), ab.clone());
                    prop_assert_eq!(join(&ab, a), ab);
                }

                #[test]
                fn deltas_in_any_order_converge_to_the_merged_states(
                    (events, order, duplicates) in history(KIND, 40).prop_flat_map(|events| {
                        let n = play(KIND, &events).deltas.len();
                        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
                        let duplicates = prop::collection::vec(any::<prop::sample::Index>(), 0..8);
                        (Just(events), order, duplicates)
                    })
                ) {
                    let p = play(KIND, &events);
                    let merged = join_all(KIND, &p.states);
                    let mut from_deltas = Crdt::new(KIND);
                    for &i in &order {
                        from_deltas.merge(&p.deltas[i]).unwrap();
                    }
                    for index in duplicates.iter().filter(|_| !p.deltas.is_empty()) {
                        from_deltas.merge(&p.deltas[index.index(p.deltas.len())]).unwrap();
                    }
                    prop_assert_eq!(from_deltas.value(), merged.value());
                    prop_assert_eq!(from_deltas, merged);
                }

                #[test]
                fn a_state_is_its_own_delta(events in history(KIND, 40)) {
                    let p = play(KIND, &events);
                    let mut replica = p.states[1].clone();
                    for state in &p.states {
                        replica.merge(state).unwrap();
                    }
                    prop_assert_eq!(replica, join_all(KIND, &p.states));
                }

                #[test]
                fn states_and_deltas_survive_encoding(events in history(KIND, 40)) {
                    let p = play(KIND, &events);
                    for crdt in p.states.iter().chain(&p.deltas) {
                        let bytes = crdt.encode().unwrap();
                        prop_assert_eq!(&Crdt::decode(&bytes).unwrap(), crdt);
                    }
                }
            }
        }
    };
}

laws!(gcounter, Kind::GCounter);
laws!(pncounter, Kind::PNCounter);
laws!(gset, Kind::GSet);
laws!(orset, Kind::ORSet);
laws!(lww_register, Kind::LWWRegister);
laws!(flag, Kind::Flag);
laws!(ormap, Kind::ORMap);
laws!(vote, Kind::Vote);
