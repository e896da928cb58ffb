//! The `swin-rollout` command: parses arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Keeps freed tensor buffers for reuse instead of unmapping and faulting them back per layer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit status shells expect of a command stopped by SIGINT (128 + 2).
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    swin_rollout::allocator::keep_freed_memory();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                swin_rollout::Error::Interrupted => ExitCode::from(INTERRUPTED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
