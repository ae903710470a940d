//! The `launcher` command: parse, run, print the error chain once, exit with its code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// Every heap allocation is zeroed when freed, so that what a secret passed through (an HTTP
/// answer, a JSON string, the app's environment block) is not left in memory after its owner
/// is gone: `--supervise` stays beside the app.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> = zeroizing_alloc::ZeroAlloc(std::alloc::System);

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
    // A panic is a bug: unwinding drops (and so wipes) every secret buffer on the way out, then
    // the launcher says so in one line and exits 70. The hook prints only where it happened:
    // payloads are not printed, so that nothing a bug might have put there is shown.
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        launcher::log::error(format!("internal error{place}; please report it"));
    }));
    match std::panic::catch_unwind(|| launcher::run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            launcher::log::error(&e);
            ExitCode::from(e.exit().code())
        }
        Err(_) => ExitCode::from(Exit::Software.code()),
    }
}
