//! launcher: fetch PostgreSQL credentials and the CA bundle from a secret store, build the libpq
//! environment, verify the encrypted connection once exactly as libpq's `sslmode=verify-full`
//! would, then exec the app (same PID) holding no secrets.
//!
//! The flow runs one way, a stage a module: [`cli`] → [`plan`] (with [`libpq`]) → [`fetch`]
//! (through [`sources`]) → [`materialize`] → [`env`] → [`check`] → [`exec`]; [`wait`] retries an
//! attempt, [`signals`] stops one cleanly, [`report`] prints what `check` saw. With
//! `--supervise`, [`supervise`] takes the exec's place and runs the stages again on a change.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod config;
pub mod drivers;
pub mod env;
pub mod error;
pub mod exec;
pub mod fetch;
pub mod harden;
pub mod lease;
pub mod libpq;
pub mod log;
pub mod materialize;
pub mod plan;
pub mod report;
pub mod signals;
pub mod sources;
pub mod supervise;
pub mod target;
pub mod tls;
pub mod wait;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use crate::check::{CheckOptions, Checked};
use crate::cli::{Cli, Command, EnvFormat, OutputFormat};
use crate::env::ChildEnv;
use crate::error::{Error, Exit, ResultExt};
use crate::materialize::{Reader, RuntimeDir};
use crate::plan::{ParentEnv, Plan};
use crate::signals::Signals;
use crate::sources::Sources;
use crate::target::Target;

/// What this run is for.
pub(crate) enum Mode {
    /// Fetch, check, exec the program.
    Launch(Vec<OsString>),
    /// Fetch and check; print the report.
    Check(OutputFormat),
    /// Fetch; print the environment.
    Env { format: EnvFormat, reveal: bool },
}

impl Mode {
    /// Whether the connection is checked: all but `env`.
    fn checks(&self) -> bool {
        !matches!(self, Self::Env { .. })
    }

    /// Whether what the stores issued is used once the launcher is done: all but `check`, whose
    /// credentials are revoked when it is.
    fn keeps_credentials(&self) -> bool {
        !matches!(self, Self::Check(_))
    }

    /// Who reads the files written for libpq.
    fn reader(&self) -> Reader {
        if matches!(self, Self::Env { .. }) { Reader::User } else { Reader::App }
    }
}

/// Runs the parsed command line: the exit status, which is the app's own with `--supervise`.
/// Returns only on failure when launching otherwise (success is the exec).
pub fn run(cli: Cli) -> Result<u8, Error> {
    let (mut options, mode) = match cli.command {
        None => (cli.options, Mode::Launch(cli.program)),
        Some(Command::Check { options, output }) => (options, Mode::Check(output)),
        Some(Command::Env { options, format, reveal }) => (options, Mode::Env { format, reveal }),
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "launcher", &mut out);
            return std::io::stdout().lock().write_all(&out).exit(Exit::Software).map(|()| 0);
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out).exit(Exit::Software)?;
            return std::io::stdout().lock().write_all(&out).exit(Exit::Software).map(|()| 0);
        }
    };
    let json_report = matches!(mode, Mode::Check(OutputFormat::Json));
    let result = (|| {
        if let Some(path) = options.config.clone() {
            config::fill(&mut options, config::load(&path)?)?;
        }
        if options.supervise && !matches!(mode, Mode::Launch(_)) {
            return Err(Error::msg(
                Exit::Usage,
                "--supervise goes with running a program (launcher --supervise -- PROGRAM)",
            ));
        }
        log::configure(options.quiet, options.verbose, options.log_format == Some(cli::LogFormat::Json));
        harden::apply();
        let env = ParentEnv::from_process();
        let home = env.get("HOME").map(PathBuf::from);
        let plan = Plan::new(&options, env, home.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().exit(Exit::Software)?;
        runtime.block_on(launch(plan, mode))
    })();
    // Monitoring reads one object whatever happened; the error line still goes to stderr.
    if let (true, Err(e)) = (json_report, &result) {
        let _ = print(&report::failure(e));
    }
    result
}

/// Everything up to the exec: the target, the files, the app's environment, and the check's
/// proof (except for `env`); for `--supervise`, the lease and what the secrets held.
pub(crate) struct Ready {
    pub(crate) target: Target,
    pub(crate) runtime_dir: Option<RuntimeDir>,
    pub(crate) child: ChildEnv,
    pub(crate) checked: Option<Checked>,
    pub(crate) lease: Option<launcher_core::Lease>,
    pub(crate) version: fetch::Version,
}

async fn launch(plan: Plan, mode: Mode) -> Result<u8, Error> {
    let signals = Signals::install()?;
    if let Mode::Launch(program) = &mode {
        // A typo in the command costs no login, no lease and no database user.
        exec::resolve(program, &plan.env)?;
    }
    let attempts = sources::Attempts::default();
    let attempted = wait::with_wait(&plan, &signals, || attempt(&plan, &mode, &signals, &attempts)).await;
    // A last try for what failed attempts could not revoke, bounded: the store may still be
    // down, and the app (or the error) should not wait on it long.
    let settle = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(settle * 2, attempts.settle_by(std::time::Instant::now() + settle)).await;
    let (ready, sources) = attempted?;
    let child = ready.child;
    match (mode, ready.checked) {
        (Mode::Env { format, reveal }, _) => {
            let text = child.render(format, reveal)?;
            if let Some(dir) = ready.runtime_dir {
                log::info(format!("the files it names are in {}: remove it when done", dir.path().display()));
                dir.keep();
            }
            print(&text).map(|()| 0)
        }
        (Mode::Check(format), Some(checked)) => {
            drop(ready.runtime_dir);
            checked.report().warnings.iter().for_each(log::warn);
            print(&report::render(checked.report(), format)?).map(|()| 0)
        }
        (Mode::Launch(program), Some(checked)) => {
            checked.report().warnings.iter().for_each(log::warn);
            log_connected(&checked);
            drop(ready.target);
            // The last moment a signal can still be acted on: after the exec it is the app's.
            if let Some(caught) = signals.pending() {
                signals::bounded(caught, sources.abandon(caught.name())).await;
                return Err(caught.error());
            }
            if plan.supervise.is_some() {
                let first = supervise::Generation::new(sources, ready.runtime_dir, ready.lease, ready.version);
                return supervise::run(&plan, &program, first, child, &checked, &attempts).await;
            }
            drop(sources);
            // Held across the exec: the files stay for the app, or go if the exec fails.
            let _runtime_dir = ready.runtime_dir;
            Err(exec::exec(&program, &child, &checked))
        }
        (_, None) => Err(Error::msg(Exit::Software, "the connection check did not run")),
    }
}

/// One attempt: fetch, write the files, build the app's environment and (unless `env`) check
/// the connection once. On failure, or once `check` is done, what the stores issued is revoked.
/// A signal lets store requests in flight finish, stops the check, and revokes.
pub(crate) async fn attempt(
    plan: &Plan,
    mode: &Mode,
    signals: &Signals,
    attempts: &sources::Attempts,
) -> Result<(Ready, Sources), Error> {
    attempts.settle(false).await;
    let openssl = mode.checks().then(tls::Context::in_background);
    let started = std::time::Instant::now();
    let sources = match signals.let_finish(Box::pin(Sources::new(plan, attempts))).await {
        Ok(sources) => sources?,
        Err((caught, logged_in)) => {
            if let Some(Ok(sources)) = logged_in {
                signals::bounded(caught, sources.abandon(caught.name())).await;
            }
            return Err(caught.error());
        }
    };
    let fetched = match signals.let_finish(fetch::fetch(plan, &sources)).await {
        Ok(fetched) => fetched,
        Err((caught, _)) => Err(caught.error()),
    };
    report::phase("fetch", started.elapsed());
    log::debug(format!("secrets fetched in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
    let ready = match fetched {
        // A login token no lease depends on is revoked while the files are written and the
        // check runs, not before: on a slow link that is a round trip off the time to exec. The
        // revocation is never cut short (a signal stops the check only), and must succeed.
        Ok(fetched) => {
            // A supervisor keeps its login: it renews it and reads with it again.
            let supervising = plan.supervise.is_some() && matches!(mode, Mode::Launch(_));
            let finish = sources.finish(fetched.lease.is_some() || supervising);
            let used = signals.abort_on(Box::pin(use_fetched(plan, fetched, openssl, mode.reader())));
            let (ready, finished) = futures_util::future::join(used, finish).await;
            ready.and_then(|ready| finished.map(|()| ready))
        }
        Err(e) => Err(e),
    };
    match ready {
        Err(e) => {
            if e.exit().verdict() == "interrupted" {
                let caught = signals.pending().expect("a signal ended the attempt");
                signals::bounded(caught, sources.abandon(caught.name())).await;
            } else if !sources.abandon("the launch failed").await {
                attempts.owe(sources);
            }
            Err(e)
        }
        Ok(ready) => {
            if !mode.keeps_credentials() {
                sources.abandon("the check is done").await;
            }
            Ok((ready, sources))
        }
    }
}

/// The stages after the fetch: the files, the app's environment, and (with `openssl`, started
/// for it) the connection check.
async fn use_fetched(
    plan: &Plan,
    fetched: fetch::Fetched,
    openssl: Option<tls::Pending>,
    reader: Reader,
) -> Result<Ready, Error> {
    let fetch::Fetched { target, ca, lease, client, version } = fetched;
    let held = lease.clone();
    let lease = lease.map(|l| lease::check(plan, l)).transpose()?;
    let files = materialize::write(plan, &target, ca, client, reader)?;
    // The app's environment before the check, so that its warnings are said (and reported by
    // `check --output json`) whatever the check concludes.
    let exported = if plan.export_lease { lease.as_ref() } else { None };
    let child = ChildEnv::build(plan, &target, &files.for_env(), exported);
    child.warnings.iter().for_each(log::warn);
    let checked = match openssl {
        Some(openssl) => Some(check_connection(plan, &target, &files, openssl).await?),
        None => None,
    };
    Ok(Ready { target, runtime_dir: files.runtime_dir, child, checked, lease: held, version })
}

/// The check stage: one connection, with the client certificate issued or the one libpq would
/// find on its own.
async fn check_connection(
    plan: &Plan,
    target: &Target,
    files: &materialize::Written,
    openssl: tls::Pending,
) -> Result<Checked, Error> {
    let options = CheckOptions {
        expiry_warning_days: i64::from(plan.expiry_warning_days),
        libpq: plan.libpq.clone(),
        drivers: plan.drivers.clone(),
    };
    let started = std::time::Instant::now();
    let presented = if let Some(issued) = &files.client {
        Some(
            tls::ClientIdentity::load(&issued.cert, &issued.key)
                .map_err(|e| Error::msg(Exit::DataErr, format!("client certificate: {e}")))?,
        )
    } else {
        let found = libpq::client_files(&plan.libpq.client)?;
        if found.is_some() && plan.drivers.contains(&drivers::Driver::Pgjdbc) {
            log::warn(
                "pgjdbc reads neither PGSSLCERT/PGSSLKEY nor a PEM key: the app will not present the client \
                 certificate the check presented (pass --client-cert, or give the app sslcert and a PKCS#8 DER sslkey)",
            );
        }
        found
    };
    let checked = check::check(target, &files.root, &options, presented, openssl).await;
    report::phase("check", started.elapsed());
    log::debug(format!("connection check took {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
    checked
}

fn log_connected(checked: &Checked) {
    let r = checked.report();
    log::info(format!("connected to {} as {}, {} {}", r.server, r.user, r.version, r.cipher));
    for skipped in &r.skipped {
        log::info(format!("passed over {}: {}", skipped.server, skipped.reason));
    }
}

fn print(text: &str) -> Result<(), Error> {
    std::io::stdout().lock().write_all(text.as_bytes()).exit(Exit::Software)
}
