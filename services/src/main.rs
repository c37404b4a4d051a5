//! `quake`: the thin binary; parses the command line and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = quake::config::Cli::parse();
    match quake::service::run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
