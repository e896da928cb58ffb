//! The `swin-rollout` command: parses arguments and hands them to the library.

use clap::Parser;

/// Keeps freed tensor buffers for reuse instead of unmapping and faulting them back per layer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = swin_rollout::cli::Cli::parse();
    match swin_rollout::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
