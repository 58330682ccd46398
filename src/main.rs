//! The `tidepool` binary: parse the command line, start tracing, dispatch to a subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tidepool::cli::allocator::return_freed_memory();
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
