//! The per-instance sandbox: the `Store` data of one guest instance. It owns the locked-down
//! WASI context (no files, environment, arguments or network; clocks stuck at zero; randomness
//! from a fixed seed; standard output and error captured into a small bounded buffer), the
//! memory limiter that caps an instance's linear memory, and the per-call deadline bookkeeping.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{Arc, Mutex, atomic::AtomicU64},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamError},
};

/// How many bytes of guest output (stdout and stderr together) an instance keeps; older bytes are
/// dropped first. Only the tail matters: it is attached to trap messages (a panic message, say).
const OUTPUT_CAPACITY: usize = 4096;

/// Seed of the guest-visible random number generators. Every instance starts from the same state,
/// so a guest that reads `wasi:random` sees the same bytes on every run; handlers that need
/// randomness use the journaled `random-seed` of their command context instead.
const RANDOM_SEED: u64 = 0x6365_6c6c_615f_726e; // "cella_rn"

/// The data of one instance's `Store`.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    output: OutputCapture,
    /// When the running call started and how long it may run (checked on each epoch tick).
    pub(crate) call_started: Instant,
    pub(crate) deadline: Duration,
    /// Microseconds the running call has spent paused (`pacing.rs`): not counted as running.
    pub(crate) paused: Arc<AtomicU64>,
}

impl StoreState {
    pub(crate) fn new(memory_limit: usize, deadline: Duration) -> Self {
        let output = OutputCapture::default();
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(ZeroClock)
            .monotonic_clock(ZeroClock)
            .secure_random(SplitMix64(RANDOM_SEED))
            .insecure_random(SplitMix64(RANDOM_SEED.rotate_left(17)))
            .insecure_random_seed(u128::from(RANDOM_SEED))
            .max_random_size(1 << 20)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        StoreState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            output,
            call_started: Instant::now(),
            deadline,
            paused: Arc::default(),
        }
    }

    /// The last bytes the guest wrote to stdout/stderr, as lossy UTF-8 (empty if none).
    pub(crate) fn output_tail(&self) -> String {
        self.output.tail()
    }

    /// Forgets the captured output (each call of a reused instance reports only its own).
    pub(crate) fn clear_output(&self) {
        self.output.clear();
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::bindings::v01::cella::entity::types::Host for StoreState {}
impl crate::bindings::v02::cella::entity::types::Host for StoreState {}

/// Caps the total linear memory of one instance (all its memories together). A growth beyond the
/// cap fails the way `memory.grow` fails (the guest sees -1), which guests usually turn into a
/// trap; the limiter remembers it so the trap can be reported as running out of memory.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            hit: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of linear memory the instance has (all its memories together).
    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            self.hit = true;
            return Ok(false);
        }
        let grow = desired.saturating_sub(current);
        match self.used.checked_add(grow) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Ok(false)
            }
        }
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The host could not provide memory it had allowed; the guest sees the failure as -1.
        self.hit = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// Wall and monotonic clock that always read zero: guests never observe real time.
struct ZeroClock;

impl HostWallClock for ZeroClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for ZeroClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A small, fast pseudo-random generator started from a fixed seed (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SplitMix64 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// Guest stdout/stderr: keeps the last [`OUTPUT_CAPACITY`] bytes and never fails a write, so a
/// chatty guest neither grows host memory nor breaks on a full pipe.
#[derive(Clone, Default)]
struct OutputCapture(Arc<Mutex<Vec<u8>>>);

impl OutputCapture {
    fn push(&self, bytes: &[u8]) {
        let Ok(mut buf) = self.0.lock() else { return };
        let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_CAPACITY)..];
        let overflow = (buf.len() + bytes.len()).saturating_sub(OUTPUT_CAPACITY);
        if overflow > 0 {
            buf.drain(..overflow);
        }
        buf.extend_from_slice(bytes);
    }

    fn clear(&self) {
        if let Ok(mut buf) = self.0.lock() {
            buf.clear();
        }
    }

    fn tail(&self) -> String {
        match self.0.lock() {
            Ok(buf) => String::from_utf8_lossy(&buf).trim().to_string(),
            Err(_) => String::new(),
        }
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn output_keeps_the_tail() {
        let out = OutputCapture::default();
        out.push(&vec![b'a'; OUTPUT_CAPACITY]);
        out.push(b"panicked at src/lib.rs");
        let tail = out.tail();
        assert_eq!(tail.len(), OUTPUT_CAPACITY);
        assert!(tail.ends_with("panicked at src/lib.rs"));
        out.push(&vec![b'z'; 3 * OUTPUT_CAPACITY]);
        assert_eq!(out.tail(), "z".repeat(OUTPUT_CAPACITY));
    }

    #[test]
    fn random_is_deterministic() {
        let (mut a, mut b) = (SplitMix64(RANDOM_SEED), SplitMix64(RANDOM_SEED));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn limiter_caps_total_memory() {
        let mut l = MemoryLimiter::new(10 << 16);
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert!(!l.memory_growing(4 << 16, 7 << 16, None).unwrap());
        assert!(l.hit);
        assert!(l.memory_growing(4 << 16, 6 << 16, None).unwrap());
    }
}
