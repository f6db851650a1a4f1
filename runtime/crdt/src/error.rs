//! The crate's one error type: an operation or a delta that does not fit the CRDT it is
//! applied to, a counter that would overflow, and bytes that do not decode.

use crate::Kind;

/// Everything that can go wrong when applying an operation, merging or decoding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operation is not one this kind of CRDT supports (e.g. `Remove` on a `GSet`).
    #[error("the operation {op} does not apply to a {kind} (hint: {hint})")]
    OperationMismatch {
        /// The operation's name.
        op: &'static str,
        /// The kind it was applied to.
        kind: Kind,
        /// The operations this kind accepts.
        hint: &'static str,
    },
    /// A state or delta of one kind merged into a CRDT of another.
    #[error("cannot merge a {delta} into a {kind}")]
    KindMismatch {
        /// The kind merged into.
        kind: Kind,
        /// The kind of the delta.
        delta: Kind,
    },
    /// A counter's total for one replica would not fit in 64 bits.
    #[error("counter overflow: replica {replica}'s total would exceed {max}", max = u64::MAX)]
    Overflow {
        /// The replica whose total overflows.
        replica: String,
    },
    /// Encoded bytes were empty.
    #[error("an encoded CRDT is empty (expected a version byte and a body)")]
    Empty,
    /// Encoded bytes carry a format version this build does not read.
    #[error("unsupported CRDT encoding version {found} (this build reads version {expected})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build writes and reads.
        expected: u8,
    },
    /// The body did not encode or decode.
    #[error("CRDT encoding failed")]
    Codec(#[source] postcard::Error),
}
