//! The envelope around a precompiled component: a magic tag, the length and a checksum of the
//! engine's serialized code, so that a truncated or damaged artifact is refused instead of run.

const MAGIC: &[u8; 16] = b"cella-precomp-v1";
const HEADER: usize = MAGIC.len() + 8 + 8;

/// Wraps serialized code in the envelope.
pub(crate) fn seal(code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + code.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(code.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(code).to_le_bytes());
    out.extend_from_slice(code);
    out
}

/// Checks the envelope and returns the serialized code inside it.
pub(crate) fn open(artifact: &[u8]) -> Result<&[u8], String> {
    let Some((header, code)) = artifact.split_at_checked(HEADER) else {
        return Err(format!(
            "precompiled artifact is too short ({} bytes)",
            artifact.len()
        ));
    };
    if &header[..MAGIC.len()] != MAGIC {
        return Err("not a precompiled artifact of this host (bad magic tag)".into());
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (len, sum) = (word(MAGIC.len()), word(MAGIC.len() + 8));
    if len != code.len() as u64 {
        return Err(format!(
            "precompiled artifact is damaged: {} bytes of code, header says {len}",
            code.len()
        ));
    }
    if sum != checksum(code) {
        return Err("precompiled artifact is damaged: checksum mismatch".into());
    }
    Ok(code)
}

/// A fast 64-bit checksum (multiply-rotate over 8-byte words); it detects damage, it is not a
/// cryptographic hash.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let code: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let sealed = seal(&code);
        assert_eq!(open(&sealed).unwrap(), &code[..]);

        let mut flipped = sealed.clone();
        flipped[HEADER + 500] ^= 1;
        assert!(open(&flipped).unwrap_err().contains("checksum"));
        assert!(
            open(&sealed[..sealed.len() - 1])
                .unwrap_err()
                .contains("damaged")
        );
        assert!(open(b"short").is_err());
        assert!(open(&[0u8; 64]).unwrap_err().contains("magic"));
    }
}
