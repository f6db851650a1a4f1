//! The `cella` binary: see [`cella_server::cli`].

fn main() -> std::process::ExitCode {
    cella_server::cli::entry()
}
