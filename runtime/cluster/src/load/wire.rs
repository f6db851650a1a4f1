//! A load report as it travels between nodes (`GET /v1/peer/load`), readable by nodes of other
//! versions during a rolling upgrade. Postcard is not self-describing: a field added inside a
//! partition's entry would shift every byte after it, and a node of an earlier version would
//! misread or refuse the whole report, so the placement loop would stall until every node runs
//! the same version. The report therefore travels in its first form — the node's figures and,
//! per led partition, its rates, term and voters — followed by what later versions added, in
//! sections: first each led partition's hottest shards. A reader takes the first form and the
//! sections it knows; postcard leaves the bytes after a value unread, so an earlier node reads
//! the first form and ignores the rest, and a report without a section reads as one with none.

use serde::{Deserialize, Serialize};

use super::{GroupLoad, LedGroup, NodeLoad, ShardLoad};
use crate::{Error, GroupId};

/// What a report is called in errors.
const WHAT: &str = "a load report";

/// [`NodeLoad`] as the first version sent it (field for field, in the same order).
#[derive(Serialize, Deserialize)]
struct FirstForm {
    node: u64,
    cpus: u32,
    cpu: f64,
    waiting: f64,
    busy: f64,
    pressure: f64,
    led: Vec<FirstLed>,
}

/// [`LedGroup`] as the first version sent it: its [`GroupLoad`] without the shards (postcard
/// does not frame a nested struct, so flattening it changes no byte).
#[derive(Serialize, Deserialize)]
struct FirstLed {
    group: GroupId,
    commands: f64,
    bytes: f64,
    term: u64,
    voters: Vec<u64>,
}

/// Encodes `load` for a peer of any version.
pub fn encode(load: &NodeLoad) -> Result<Vec<u8>, Error> {
    let first = FirstForm {
        node: load.node,
        cpus: load.cpus,
        cpu: load.cpu,
        waiting: load.waiting,
        busy: load.busy,
        pressure: load.pressure,
        led: load
            .led
            .iter()
            .map(|l| FirstLed {
                group: l.load.group,
                commands: l.load.commands,
                bytes: l.load.bytes,
                term: l.term,
                voters: l.voters.clone(),
            })
            .collect(),
    };
    let mut bytes = crate::types::encode(WHAT, &first)?;
    // Section 1: the hottest shards of each led partition, in the order of `led`.
    let shards: Vec<&[ShardLoad]> = load.led.iter().map(|l| l.load.shards.as_slice()).collect();
    bytes.extend(crate::types::encode(WHAT, &shards)?);
    Ok(bytes)
}

/// Decodes a report [`encode`] wrote, on this version or another.
pub fn decode(bytes: &[u8]) -> Result<NodeLoad, Error> {
    let malformed = |source| Error::Decode { what: WHAT, source };
    let (first, rest) = postcard::take_from_bytes::<FirstForm>(bytes).map_err(malformed)?;
    let mut shards: Vec<Vec<ShardLoad>> = if rest.is_empty() {
        Vec::new()
    } else {
        postcard::take_from_bytes(rest).map_err(malformed)?.0
    };
    shards.resize_with(first.led.len(), Vec::new);
    Ok(NodeLoad {
        node: first.node,
        cpus: first.cpus,
        cpu: first.cpu,
        waiting: first.waiting,
        busy: first.busy,
        pressure: first.pressure,
        led: first
            .led
            .into_iter()
            .zip(shards)
            .map(|(l, shards)| LedGroup {
                load: GroupLoad {
                    group: l.group,
                    commands: l.commands,
                    bytes: l.bytes,
                    shards,
                },
                term: l.term,
                voters: l.voters,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> NodeLoad {
        let led = |group, shards: Vec<ShardLoad>| LedGroup {
            load: GroupLoad {
                group,
                commands: 120.5,
                bytes: 9000.0,
                shards,
            },
            term: 4,
            voters: vec![1, 2, 3],
        };
        NodeLoad {
            node: 2,
            cpus: 2,
            cpu: 1.25,
            waiting: 0.1,
            busy: 0.7,
            pressure: 0.7,
            led: vec![
                led(
                    1,
                    vec![ShardLoad {
                        shard: 77,
                        commands: 80.0,
                    }],
                ),
                led(3, Vec::new()),
            ],
        }
    }

    #[test]
    fn a_report_reads_back_whole() {
        let load = report();
        assert_eq!(decode(&encode(&load).unwrap()).unwrap(), load);
    }

    #[test]
    fn an_earlier_node_reads_the_first_form_of_a_report() {
        let bytes = encode(&report()).unwrap();
        // What a node of the first version decodes: its `NodeLoad` is the first form.
        let first: FirstForm = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((first.node, first.cpus, first.busy), (2, 2, 0.7));
        let led: Vec<(GroupId, f64, u64, Vec<u64>)> = first
            .led
            .into_iter()
            .map(|l| (l.group, l.commands, l.term, l.voters))
            .collect();
        assert_eq!(
            led,
            [(1, 120.5, 4, vec![1, 2, 3]), (3, 120.5, 4, vec![1, 2, 3])]
        );
    }

    #[test]
    fn a_report_of_an_earlier_node_reads_without_shards() {
        let mut load = report();
        let first = encode(&load).unwrap();
        let first_form_len = {
            let (_, rest) = postcard::take_from_bytes::<FirstForm>(&first).unwrap();
            first.len() - rest.len()
        };
        for led in &mut load.led {
            led.load.shards.clear();
        }
        assert_eq!(decode(&first[..first_form_len]).unwrap(), load);
        // A cut report is refused, not misread.
        assert!(decode(&first[..first_form_len - 1]).is_err());
    }
}
