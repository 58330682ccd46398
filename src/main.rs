//! The `tidepool` binary: parse the command line, start tracing, dispatch to a subcommand.

use clap::Parser;

/// mimalloc: DataFusion and the protocol encoders allocate and free many large buffers
/// (one per batch); glibc's allocator returns them to the kernel and page-faults them back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = tidepool::cli::Cli::parse();
    tidepool::cli::init_tracing(cli.verbose);
    match tidepool::cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
