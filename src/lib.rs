//! launcher: fetch PostgreSQL credentials and the CA bundle from a secret store, build the libpq
//! environment, verify the encrypted connection once exactly as libpq's `sslmode=verify-full`
//! would, then exec the app (same PID) holding no secrets.
//!
//! The flow runs one way: [`cli`] → [`plan`] → [`sources`] → [`target`] + CA file
//! ([`materialize`]) → [`check`] → [`env`] → [`exec`].
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod config;
pub mod env;
pub mod error;
pub mod exec;
pub mod harden;
pub mod libpq;
pub mod log;
pub mod materialize;
pub mod plan;
pub mod report;
pub mod signals;
pub mod sources;
pub mod target;
pub mod tls;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use launcher_core::{DbSecret, Document, Lease, Reference, SecretBytes, SourceError};

use crate::check::{CheckOptions, Checked, ClientFiles};
use crate::cli::{Cli, Command, EnvFormat, OutputFormat, PasswordVia};
use crate::env::ChildEnv;
use crate::error::{Error, Exit, ResultExt};
use crate::materialize::{Reader, RuntimeDir};
use crate::plan::{CaPlan, ParentEnv, Plan};
use crate::signals::Signals;
use crate::sources::Sources;
use crate::target::Target;

enum Mode {
    Launch(Vec<OsString>),
    Check(OutputFormat),
    Env { format: EnvFormat, reveal: bool },
}

/// Runs the parsed command line. Returns only on failure when launching (success is the exec).
pub fn run(cli: Cli) -> Result<(), Error> {
    let (mut options, mode) = match cli.command {
        None => (cli.options, Mode::Launch(cli.program)),
        Some(Command::Check { options, output }) => (options, Mode::Check(output)),
        Some(Command::Env { options, format, reveal }) => (options, Mode::Env { format, reveal }),
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "launcher", &mut out);
            return std::io::stdout().lock().write_all(&out).exit(Exit::Software);
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out).exit(Exit::Software)?;
            return std::io::stdout().lock().write_all(&out).exit(Exit::Software);
        }
    };
    let json_report = matches!(mode, Mode::Check(OutputFormat::Json));
    let result = (|| {
        if let Some(path) = options.config.clone() {
            config::fill(&mut options, config::load(&path)?)?;
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

/// Everything up to the exec: the target, the CA file, and the check's proof (except for `env`).
struct Ready {
    target: Target,
    runtime_dir: Option<RuntimeDir>,
    child: ChildEnv,
    checked: Option<Checked>,
}

/// A lease as the app may be told of it.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    /// The store's lease id.
    pub id: String,
    /// When the credentials stop working (the earlier of lease and token expiry), RFC 3339 UTC.
    pub expires_at: String,
}

/// Logs the lease, refuses it when it ends sooner than `--min-ttl`, and says when it ends.
fn check_lease(plan: &Plan, lease: Lease) -> Result<LeaseInfo, Error> {
    let effective = lease.effective_ttl();
    let token_note = match lease.token_ttl {
        Some(t) if t < lease.ttl => format!("; the token it hangs on expires sooner, in {}s", t.as_secs()),
        _ => String::new(),
    };
    log::info(format!(
        "lease {}: {}s, {}{token_note}",
        lease.id,
        lease.ttl.as_secs(),
        if lease.renewable { "renewable (the launcher does not renew after exec)" } else { "not renewable" }
    ));
    if let Some(min) = plan.min_ttl.filter(|min| effective < *min) {
        return Err(Error::msg(
            Exit::Config,
            format!("the credentials expire in {}s, sooner than --min-ttl {}s", effective.as_secs(), min.as_secs()),
        ));
    }
    let expires = std::time::SystemTime::now() + effective;
    Ok(LeaseInfo { id: lease.id, expires_at: report::rfc3339(expires) })
}

async fn launch(plan: Plan, mode: Mode) -> Result<(), Error> {
    let signals = Signals::install()?;
    if let Mode::Launch(program) = &mode {
        // A typo in the command costs no login, no lease and no database user.
        exec::resolve(program, &plan.env)?;
    }
    let check = !matches!(mode, Mode::Env { .. });
    // `launcher check` uses the credentials for nothing after the check.
    let used = !matches!(mode, Mode::Check(_));
    let reader = if matches!(mode, Mode::Env { .. }) { Reader::User } else { Reader::App };
    let (ready, sources) = with_wait(&plan, &signals, || prepare(&plan, check, used, reader, &signals)).await?;
    let child = ready.child;
    match (mode, ready.checked) {
        (Mode::Env { format, reveal }, _) => {
            let text = child.render(format, reveal)?;
            if let Some(dir) = ready.runtime_dir {
                log::info(format!("the files it names are in {}: remove it when done", dir.path().display()));
                dir.keep();
            }
            print(&text)
        }
        (Mode::Check(format), Some(checked)) => {
            drop(ready.runtime_dir);
            checked.report().warnings.iter().for_each(log::warn);
            print(&report::render(checked.report(), format)?)
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
            drop(sources);
            // Held across the exec: the files stay for the app, or go if the exec fails.
            let _runtime_dir = ready.runtime_dir;
            Err(exec::exec(&program, &child, &checked))
        }
        (_, None) => Err(Error::msg(Exit::Software, "the connection check did not run")),
    }
}

/// Fetches, writes the CA file and (when `check`) checks the connection once. Unless the
/// credentials will be `used`, or on failure, the dynamic credentials issued go again. A signal
/// lets store requests in flight finish, stops the check, and revokes.
async fn prepare(
    plan: &Plan,
    check: bool,
    used: bool,
    reader: Reader,
    signals: &Signals,
) -> Result<(Ready, Sources), Error> {
    let openssl = check.then(tls::Context::in_background);
    let started = std::time::Instant::now();
    let sources = match signals.let_finish(Box::pin(Sources::new(plan))).await {
        Ok(sources) => sources?,
        Err((caught, logged_in)) => {
            if let Some(Ok(sources)) = logged_in {
                signals::bounded(caught, sources.abandon(caught.name())).await;
            }
            return Err(caught.error());
        }
    };
    let fetched = match signals.let_finish(fetch(plan, &sources)).await {
        Ok(fetched) => fetched,
        Err((caught, _)) => Err(caught.error()),
    };
    report::phase("fetch", started.elapsed());
    log::debug(format!("secrets fetched in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
    let ready = match fetched {
        Ok(fetched) => signals.abort_on(Box::pin(use_fetched(plan, fetched, openssl, reader))).await,
        Err(e) => Err(e),
    };
    match &ready {
        Err(e) if e.exit().verdict() == "interrupted" => {
            let caught = signals.pending().expect("a signal ended the attempt");
            signals::bounded(caught, sources.abandon(caught.name())).await;
        }
        Err(_) => sources.abandon("the launch failed").await,
        Ok(_) if !used => sources.abandon("the check is done").await,
        Ok(_) => {}
    }
    ready.map(|ready| (ready, sources))
}

/// Writes the files and (with `openssl`, started for it) checks the connection once.
async fn use_fetched(
    plan: &Plan,
    fetched: Fetched,
    openssl: Option<tls::Pending>,
    reader: Reader,
) -> Result<Ready, Error> {
    let Fetched { target, ca, lease, client } = fetched;
    let lease = lease.map(|l| check_lease(plan, l)).transpose()?;
    let passfile_needed = plan.password_via == PasswordVia::Passfile && target.password.is_some();
    // Refused before anything is written: a line libpq cannot read back would fail the app
    // after the check passed.
    let passfile_line = match &target.password {
        Some(password) if passfile_needed => {
            Some(libpq::pgpass::line(&target.host, target.port, &target.user, password)?)
        }
        _ => None,
    };
    let runtime_dir = if matches!(plan.ca, CaPlan::Fetch(_)) || passfile_needed || client.is_some() {
        Some(RuntimeDir::create(&plan.env, plan.runtime_dir.as_deref(), reader)?)
    } else {
        None
    };
    // A write that fails part-way (a full disk, a file-size limit) must not leave a fragment of
    // a key or a .pgpass line behind: the directory goes with the error (the guard's drop).
    let root = match (&plan.ca, ca, &runtime_dir) {
        (CaPlan::Fetch(_), Some(pem), Some(dir)) => dir.write("root.crt", pem.expose(), 0o644)?,
        (CaPlan::Existing(path), _, _) => path.clone(),
        _ => return Err(Error::msg(Exit::Software, "CA bundle was not fetched")),
    };
    let passfile = match (passfile_line, &runtime_dir) {
        (Some(line), Some(dir)) => Some(dir.write(".pgpass", line.expose().as_bytes(), 0o600)?),
        _ => None,
    };
    let client = match (client, &runtime_dir) {
        (Some((cert, key)), Some(dir)) => Some(ClientFiles {
            cert: dir.write("client.crt", cert.as_bytes(), 0o644)?,
            key: dir.write("client.key", key.expose().as_bytes(), 0o600)?,
        }),
        _ => None,
    };
    // The app's environment before the check, so that its warnings are said (and reported by
    // `check --output json`) whatever the check concludes.
    let exported = if plan.export_lease { lease.as_ref() } else { None };
    let files = env::Files { root: &root, passfile: passfile.as_deref(), client: client.as_ref() };
    let child = ChildEnv::build(plan, &target, &files, exported);
    child.warnings.iter().for_each(log::warn);
    let Some(openssl) = openssl else {
        return Ok(Ready { target, runtime_dir, child, checked: None });
    };
    let options = CheckOptions { expiry_warning_days: i64::from(plan.expiry_warning_days), libpq: plan.libpq.clone() };
    let started = std::time::Instant::now();
    // Without --client-cert, the client certificate libpq would find on its own, if any.
    let presented = match &client {
        Some(issued) => Some(
            tls::ClientIdentity::load(&issued.cert, &issued.key)
                .map_err(|e| Error::msg(Exit::DataErr, format!("client certificate: {e}")))?,
        ),
        None => libpq::client_files(&plan.libpq.client)?,
    };
    let checked = check::check(&target, &root, &options, presented, openssl).await;
    report::phase("check", started.elapsed());
    log::debug(format!("connection check took {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
    Ok(Ready { target, runtime_dir, child, checked: Some(checked?) })
}

/// Retries `attempt` while it fails with "unreachable" and `--wait` has time left, sleeping
/// with jittered exponential back-off (200 ms doubling to 5 s). Other failures return at once;
/// a signal ends the wait (nothing is held between attempts).
async fn with_wait<T, F, Fut>(plan: &Plan, signals: &Signals, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(wait) = plan.wait else { return attempt().await };
    let deadline = std::time::Instant::now() + wait;
    let jitter = std::collections::hash_map::RandomState::new();
    for n in 0u32.. {
        match attempt().await {
            Err(e) if e.exit() == Exit::Unavailable => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(e
                        .context(format!("still unavailable after waiting {}s", wait.as_secs()))
                        .with_exit(Exit::TempFail));
                }
                let full = Duration::from_millis(200u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(5));
                let random = std::hash::BuildHasher::hash_one(&jitter, n);
                let delay = (full / 2 + full / 2000 * u32::try_from(random % 1000).unwrap_or(0)).min(left);
                log::info(format!("attempt {} failed, retrying in {}ms: {e}", n + 1, delay.as_millis()));
                signals
                    .abort_on(async {
                        tokio::time::sleep(delay).await;
                        Ok(())
                    })
                    .await?;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// What `fetch` brings back.
struct Fetched {
    target: Target,
    ca: Option<SecretBytes>,
    lease: Option<Lease>,
    /// Client certificate and key, PEM.
    client: Option<(String, launcher_core::SecretString)>,
}

/// Reads the credentials and the CA (concurrently, or once when one secret holds both) and
/// combines them with the plan.
async fn fetch(plan: &Plan, sources: &Sources) -> Result<Fetched, Error> {
    let ((secret, lease), ca) = match (&plan.credentials, &plan.ca) {
        // One secret holding both (`vault:secret/app/db` and `…#ca_pem`) is read once: one
        // round trip fewer, and a dynamic secret is not issued twice.
        (Some(creds), CaPlan::Fetch(ca)) if creds.same_document(ca) => {
            let (document, lease) = sources.fetch_leased(creds).await?;
            let pem = ca_bundle(document.clone(), ca)?;
            (credentials(document, lease, creds)?, Some(pem))
        }
        _ => {
            let creds = async {
                let Some(reference) = &plan.credentials else {
                    return Ok((DbSecret::default(), None));
                };
                let (document, lease) = sources.fetch_leased(reference).await?;
                credentials(document, lease, reference)
            };
            let ca = async {
                let CaPlan::Fetch(reference) = &plan.ca else {
                    return Ok(None);
                };
                ca_bundle(sources.fetch(reference).await?, reference).map(Some)
            };
            futures_util::future::try_join(creds, ca).await?
        }
    };
    let target = Target::resolve(plan, secret)?;
    let client = match &plan.client_cert {
        Some(reference) => Some(sources.issue_client_cert(reference, &target.user).await?),
        None => None,
    };
    sources.finish(lease.is_some()).await?;
    Ok(Fetched { target, ca, lease, client })
}

/// The database credentials in `document`, which `reference` was read into.
fn credentials(
    mut document: Document,
    lease: Option<Lease>,
    reference: &Reference,
) -> Result<(DbSecret, Option<Lease>), SourceError> {
    if reference.field().is_some() {
        // A field that itself holds the JSON credentials (e.g. an RDS secret in one KV field).
        document = Document::Blob(document.select(reference)?);
    }
    let fields = document.into_fields(reference)?;
    let secret = DbSecret::from_fields(&fields, reference)?;
    log::info_once(format!("credentials from {reference} (fields: {})", fields.names()));
    Ok((secret, lease))
}

/// The PEM CA bundle `reference` selects from `document`.
fn ca_bundle(document: Document, reference: &Reference) -> Result<SecretBytes, SourceError> {
    let pem = document.select(reference)?;
    if !contains(pem.expose(), b"-----BEGIN CERTIFICATE-----") {
        return Err(SourceError::bad_content(reference, "is not a PEM certificate bundle (no BEGIN CERTIFICATE line)"));
    }
    // The CA file is written world-readable for the app: a key in it would be given away.
    // Any "BEGIN … PRIVATE KEY" block (PKCS#8, RSA, EC, encrypted) counts.
    if pem
        .expose()
        .split(|b| *b == b'\n')
        .any(|line| line.starts_with(b"-----BEGIN ") && contains(line, b"PRIVATE KEY-----"))
    {
        return Err(SourceError::bad_content(
            reference,
            "holds a private key; a CA bundle holds certificates only (nothing was written)",
        ));
    }
    Ok(pem)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn log_connected(checked: &Checked) {
    let r = checked.report();
    log::info(format!("connected to {} as {}, {} {}", r.server, r.user, r.version, r.cipher));
}

fn print(text: &str) -> Result<(), Error> {
    std::io::stdout().lock().write_all(text.as_bytes()).exit(Exit::Software)
}
