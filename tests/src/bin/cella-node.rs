//! The `cella` program built inside the test package, so integration tests can spawn it as a
//! real process (`CARGO_BIN_EXE_cella-node`) and kill it.

fn main() -> std::process::ExitCode {
    cella_cli::cli::entry()
}
