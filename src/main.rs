//! The `launcher` command: parse, run, print the error chain once, exit with its code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use launcher::cli::Cli;
use launcher::error::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(Exit::Usage.code()) } else { ExitCode::SUCCESS };
        }
    };
    match launcher::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("launcher: error: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}
