//! The `cairn` binary: a thin shell over `cli::run`, which maps errors to exit codes.

fn main() -> std::process::ExitCode {
    cairn::cli::run(std::env::args().collect())
}
