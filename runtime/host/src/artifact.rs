//! The envelope around a precompiled component: a magic tag, the length and a checksum of the
//! engine's serialized code, so that a truncated or damaged artifact is refused instead of run.
//!
//! An artifact can also be kept as a *file* that the engine maps instead of copying
//! ([`write_file`], [`map_file`]): machine code backed by a file is shared with the page cache
//! and can be evicted under memory pressure, while a copy is anonymous memory for the life of
//! the module. The engine needs its serialized code at the start of the file, so the file holds
//! the bare code and the envelope's header (tag, length, checksum) is a sidecar next to it
//! (`NAME.seal`). Before mapping, the file's length and checksum are checked against the
//! sidecar, so a truncated, damaged or half-replaced file is refused (and the caller falls back
//! to another copy) instead of run. Both are written to temporary names, synced and renamed into
//! place (code first, then the sidecar), so a crash leaves either the old pair, the new pair, or
//! a pair whose checksum does not match; and a file a running module has mapped is never
//! overwritten in place, only replaced. As with the envelope, the checksum guards against
//! damage, not forgery: only this program writes these files.

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
};

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
    let mut sum = Checksum::new(bytes.len() as u64);
    let whole = bytes.len() - bytes.len() % 8;
    sum.words(&bytes[..whole]);
    sum.finish(&bytes[whole..])
}

/// [`checksum`] computed piece by piece: whole 8-byte words, then the tail.
struct Checksum(u64);

impl Checksum {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn new(len: u64) -> Checksum {
        Checksum(len)
    }

    /// Adds whole words (`bytes.len()` is a multiple of 8).
    fn words(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(Self::K);
        }
    }

    /// Adds the last `tail` (fewer than 8 bytes, maybe none) and returns the checksum.
    fn finish(mut self, tail: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(Self::K);
        self.0 ^ (self.0 >> 29)
    }
}

/// The sidecar of the artifact file at `path`: `path` with `.seal` appended.
fn seal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

/// Writes the code of `artifact` (an envelope made by [`seal`]) to `path` and its header to the
/// sidecar, each through a synced temporary file renamed into place; then syncs the directory.
pub(crate) fn write_file(artifact: &[u8], path: &Path) -> Result<(), String> {
    let code = open(artifact)?;
    let header = &artifact[..HEADER];
    let seal = seal_path(path);
    let temp = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(format!(".tmp{}", std::process::id()));
        PathBuf::from(name)
    };
    let (code_tmp, seal_tmp) = (temp(path), temp(&seal));
    let write = |to: &Path, bytes: &[u8]| -> std::io::Result<()> {
        let mut file = File::create(to)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    let result = write(&code_tmp, code)
        .and_then(|()| write(&seal_tmp, header))
        .and_then(|()| std::fs::rename(&code_tmp, path))
        .and_then(|()| std::fs::rename(&seal_tmp, &seal))
        .and_then(|()| match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
            _ => Ok(()),
        });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&code_tmp);
        let _ = std::fs::remove_file(&seal_tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}

/// Checks the artifact file at `path` against its sidecar (tag, length, checksum), reading it
/// in pieces so that no copy of the code stays in memory.
pub(crate) fn check_file(path: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut header = [0u8; HEADER];
    File::open(seal_path(path))
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(fail)?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err("not a precompiled artifact of this host (bad magic tag)".into());
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (len, sum) = (word(MAGIC.len()), word(MAGIC.len() + 8));
    let mut file = File::open(path).map_err(fail)?;
    let actual = file.metadata().map_err(fail)?.len();
    if actual != len {
        return Err(format!(
            "precompiled artifact file is damaged: {actual} bytes of code, header says {len}"
        ));
    }
    const PIECE: usize = 1 << 20;
    let mut buffer = vec![0u8; PIECE];
    let mut checksum = Checksum::new(len);
    let mut left = len;
    while left >= PIECE as u64 {
        file.read_exact(&mut buffer).map_err(fail)?;
        checksum.words(&buffer);
        left -= PIECE as u64;
    }
    // Less than a piece is left: its whole words, then the tail.
    let rest = &mut buffer[..left as usize];
    file.read_exact(rest).map_err(fail)?;
    let whole = rest.len() - rest.len() % 8;
    checksum.words(&rest[..whole]);
    if checksum.finish(&rest[whole..]) != sum {
        return Err("precompiled artifact file is damaged: checksum mismatch".into());
    }
    Ok(())
}

/// Removes the artifact file at `path` and its sidecar, if they exist.
pub(crate) fn remove_file(path: &Path) {
    let _ = std::fs::remove_file(seal_path(path));
    let _ = std::fs::remove_file(path);
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

    #[test]
    fn files_are_checked_against_their_seal() {
        let dir = std::env::temp_dir().join(format!("cella-artifact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Lengths around the piece size and the word size.
        for len in [0usize, 5, 8, 1000, (1 << 20) + 3, 2 << 20] {
            let code: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            let path = dir.join(format!("a{len}.cwasm"));
            write_file(&seal(&code), &path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), code);
            check_file(&path).unwrap();
            if len > 0 {
                let mut damaged = code.clone();
                damaged[len / 2] ^= 1;
                std::fs::write(&path, &damaged).unwrap();
                assert!(check_file(&path).unwrap_err().contains("checksum"));
                std::fs::write(&path, &code[..len - 1]).unwrap();
                assert!(check_file(&path).unwrap_err().contains("damaged"));
            }
            remove_file(&path);
            assert!(check_file(&path).is_err());
        }
        assert!(write_file(b"garbage", &dir.join("g.cwasm")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
