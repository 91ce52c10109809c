//! The `cairn` binary: a thin shell over `cli::run`, which maps errors to exit codes.

/// jemalloc for every allocation in the process (Rust's and RocksDB's): see ARCHITECTURE.md,
/// "Memory", for the soak that chose it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cairn::cli::run(std::env::args().collect())
}
