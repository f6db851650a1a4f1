//! The `cella` binary: see [`cella_cli::cli`]. mimalloc is the global allocator: the command
//! path allocates many small, short-lived buffers, where it measured ~15% more durable req/s
//! than glibc's allocator in `cargo xtask bench` at 64 connections.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cella_cli::cli::entry()
}
