//! `--supervise`: the one mode in which the launcher stays. The app runs as its child with the
//! environment an exec would have given it, and the launcher does three jobs beside it:
//!
//! - PID 1's, as tini does them: the signals a container or a terminal sends are forwarded to
//!   the app, every child that ends is reaped (the launcher is a subreaper when it is not PID 1,
//!   so orphaned grandchildren come to it), and it exits with the app's status (128 + N when a
//!   signal ended it).
//! - Renewal: the credentials' lease and the Vault token are renewed at about 2/3 of their TTL,
//!   with jitter; a renewal that fails is retried with back-off while the app runs on.
//! - Change: when the lease can no longer be extended (its max TTL), is gone, or a secret without
//!   a lease reads differently (a KV version, a static role's rotation, an AWS version), the
//!   whole launch runs again (fetch, files, environment, check) while the app runs on, and only
//!   then is `--on-change` applied. What the old credentials were issued is revoked once nothing
//!   uses them.
//!
//! What it holds between changes: the stores' clients (the Vault token), the lease, a digest of
//! what the secrets held, and the app's files. The app's environment (the password) is dropped,
//! and so wiped, once the app has started (docs/security.md lists it all).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::check::Checked;
use crate::cli::OnChange;
use crate::env::ChildEnv;
use crate::error::{Error, Exit};
use crate::fetch::Version;
use crate::materialize::RuntimeDir;
use crate::plan::{Plan, Supervise};
use crate::sources::{Attempts, Sources};
use crate::{Mode, exec, harden, log};

/// What one launch (the first, or the one a change made) issued and wrote.
#[derive(Debug)]
pub struct Generation {
    sources: Sources,
    runtime_dir: Option<RuntimeDir>,
    lease: Option<launcher_core::Lease>,
    version: Version,
    /// The app's environment, kept only when it holds no secret (the password in a file): a
    /// change applied in place must leave it as it is.
    env: Option<ChildEnv>,
}

impl Generation {
    /// The first launch's, or a change's.
    #[must_use]
    pub fn new(
        sources: Sources,
        runtime_dir: Option<RuntimeDir>,
        lease: Option<launcher_core::Lease>,
        version: Version,
    ) -> Self {
        Self { sources, runtime_dir, lease, version, env: None }
    }

    /// Revokes what it was issued (within a bound: the store may be down) and removes its files.
    async fn retire(self, why: &str) {
        let revoke = self.sources.abandon(why);
        if tokio::time::timeout(Duration::from_secs(10), revoke).await.is_err() {
            log::warn(format!("{why}: gave up revoking after 10s; the old credentials stay valid until they expire"));
        }
    }
}

/// The signals forwarded to the app, as tini forwards them.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// What arrives: a child ended, or a signal to forward.
enum Event {
    Child,
    Signal(Signal),
}

/// The signal streams, installed before the app starts so that nothing sent to it is missed.
struct Incoming {
    child: tokio::signal::unix::Signal,
    forwarded: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Incoming {
    fn install() -> Result<Self, Error> {
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::new(Exit::Software, e).context("installing signal handlers"))
        };
        let forwarded = FORWARDED
            .iter()
            .map(|s| Ok((*s, install(SignalKind::from_raw(*s as i32))?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self { child: install(SignalKind::child())?, forwarded })
    }

    async fn next(&mut self) -> Event {
        let signals = futures_util::future::select_all(
            self.forwarded.iter_mut().map(|(s, stream)| Box::pin(async move { stream.recv().await.map(|()| *s) })),
        );
        tokio::select! {
            _ = self.child.recv() => Event::Child,
            (got, _, _) = signals => got.map_or(Event::Child, Event::Signal),
        }
    }
}

/// The app's process.
struct App {
    pid: Pid,
}

/// Whether the launcher runs in the foreground of a terminal (a developer's shell). Then the app
/// gets a process group of its own and the terminal with it, as tini's `isolate_child` does: the
/// terminal's Ctrl-C, Ctrl-\ and window changes reach the app once, not once from the terminal
/// and again through the launcher. Read once, before the first app takes the foreground.
fn terminal() -> bool {
    static FOREGROUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOREGROUND.get_or_init(|| nix::unistd::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp()))
}

impl App {
    fn start(program: &[OsString], env: &ChildEnv, checked: &Checked) -> Result<Self, Error> {
        let terminal = terminal();
        let pid = exec::spawn(program, env, checked, terminal)?;
        if terminal {
            // Handing the terminal over from what is by then a background group (a restart)
            // would stop the launcher with SIGTTOU: blocked on this thread, which does it (the
            // app starts with an empty mask).
            let mut ttou = nix::sys::signal::SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&ttou), None);
            if let Err(e) = nix::unistd::tcsetpgrp(std::io::stdin(), pid) {
                log::warn(format!("could not hand the terminal to the app: {e}"));
            }
            // It may have touched the terminal before it had it, and been stopped for that.
            let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
        }
        log::info(format!("started {} as PID {pid}", program[0].to_string_lossy()));
        Ok(Self { pid })
    }

    fn signal(&self, signal: Signal) {
        // ESRCH: it has just exited; its status is being reaped.
        let _ = nix::sys::signal::kill(self.pid, signal);
    }
}

/// Reaps every child that has ended; the app's exit status as a shell reports it, if it was one.
fn reap(app: Pid) -> Option<u8> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == app => ended = Some(u8::try_from(code).unwrap_or(255)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == app => {
                ended = Some(128u8.saturating_add(u8::try_from(signal as i32).unwrap_or(127)));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {}
        }
    }
}

/// `span`, made up to a tenth shorter or longer at random, so that a fleet started together does
/// not renew together.
fn jittered(span: Duration) -> Duration {
    let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), Instant::now());
    let tenth = span / 10;
    let offset = Duration::from_millis(random % (tenth.as_millis().max(1) as u64 * 2 + 1));
    (span + offset).saturating_sub(tenth)
}

/// When each job is next due.
struct Due {
    lease: Option<Instant>,
    token: Option<Instant>,
    poll: Instant,
    /// A change that failed, to be tried again.
    retry: Option<Instant>,
    /// The longest TTL the token was renewed to: a renewal that gives less is capped.
    token_full: Option<Duration>,
    /// Back-off for failed renewals and changes.
    failures: u32,
}

impl Due {
    fn new(generation: &Generation, settings: &Supervise) -> Self {
        let now = Instant::now();
        Self {
            lease: generation
                .lease
                .as_ref()
                .map(|l| now + if l.renewable { jittered(l.ttl * 2 / 3) } else { l.ttl / 2 }),
            // Renewed at once: the answer says how long the token lives.
            token: Some(now),
            poll: now + next_poll(settings, generation.version.rotates_in),
            retry: None,
            token_full: None,
            failures: 0,
        }
    }

    fn next(&self) -> Instant {
        [self.lease, self.token, Some(self.poll), self.retry].into_iter().flatten().min().expect("poll is always due")
    }

    fn backoff(&mut self, left: Option<Duration>) -> Duration {
        self.failures += 1;
        let full = Duration::from_secs(1u64 << self.failures.min(6)).min(Duration::from_mins(1));
        left.map_or(full, |l| full.min(l / 3).max(Duration::from_millis(500)))
    }
}

fn next_poll(settings: &Supervise, rotates_in: Option<Duration>) -> Duration {
    let refresh = jittered(settings.refresh);
    // A static role is read again just after Vault says it rotates, and then every quarter
    // second until it has (Vault rotates on a ticker, a little late): until the new password is
    // in the files, the app's new connections are refused.
    match rotates_in {
        Some(r) => refresh.min(r + Duration::from_millis(250)),
        None => refresh,
    }
}

/// Runs the app under supervision until it exits; returns its status (or 75 with
/// `--on-change exit`).
pub async fn run(
    plan: &Plan,
    program: &[OsString],
    first: Generation,
    env: ChildEnv,
    checked: &Checked,
    attempts: &Attempts,
) -> Result<u8, Error> {
    let settings = plan.supervise.expect("supervising");
    if std::process::id() != 1
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        log::warn(format!("could not become a subreaper ({e}): orphans of the app will not be reaped"));
    }
    let mut incoming = Incoming::install()?;
    let mut app = App::start(program, &env, checked)?;
    let mut current = first;
    current.env = keep_env(&settings, env);
    harden::lock_memory();
    let mut due = Due::new(&current, &settings);
    loop {
        let event = tokio::select! {
            event = incoming.next() => Some(event),
            () = tokio::time::sleep_until(due.next().into()) => None,
        };
        match event {
            Some(Event::Child) => {
                if let Some(status) = reap(app.pid) {
                    log::info(format!("the app exited with status {status}"));
                    current.retire("the app exited").await;
                    return Ok(status);
                }
            }
            Some(Event::Signal(s)) => {
                log::info(format!("forwarding {} to the app", s.as_str()));
                app.signal(s);
            }
            None => {
                let Some(reason) = renew(plan, &current, &mut due).await else { continue };
                match change(plan, program, &mut app, &mut current, &mut incoming, attempts, &reason).await {
                    Ok(Changed::Applied) => due = Due::new(&current, &settings),
                    Ok(Changed::Exit(next)) => {
                        next.retire("exiting for a restart").await;
                        current.retire("exiting for a restart").await;
                        let code = Exit::TempFail.code();
                        log::info(format!("the credentials changed: exiting {code} for the orchestrator to restart"));
                        return Ok(code);
                    }
                    Err(e) => {
                        let left = current.lease.as_ref().map(launcher_core::Lease::effective_ttl);
                        let wait = due.backoff(left);
                        log::warn(format!(
                            "{reason}, but the new credentials failed: {e}; the app runs on with the old ones, \
                             trying again in {}s",
                            wait.as_secs_f32()
                        ));
                        due.retry = Some(Instant::now() + wait);
                        due.lease = None;
                        due.poll = Instant::now() + Duration::from_hours(24);
                    }
                }
            }
        }
    }
}

/// The environment kept when a change is applied in place; dropped (wiped) otherwise.
fn keep_env(settings: &Supervise, env: ChildEnv) -> Option<ChildEnv> {
    matches!(settings.on_change, OnChange::Passfile | OnChange::Signal(_)).then_some(env)
}

/// Does what is due; says why the credentials must change, if they must.
async fn renew(plan: &Plan, current: &Generation, due: &mut Due) -> Option<String> {
    let now = Instant::now();
    let settings = plan.supervise.expect("supervising");
    if due.retry.is_some_and(|t| t <= now) {
        due.retry = None;
        return Some("trying the change again".into());
    }
    if let (Some(at), Some(lease), Some(reference)) = (due.lease, &current.lease, &plan.credentials)
        && at <= now
    {
        if !lease.renewable {
            return Some(format!("lease {} cannot be renewed", lease.id));
        }
        match current.sources.renew_lease(reference, lease).await {
            Ok(ttl) if ttl + Duration::from_secs(1) < lease.ttl => {
                return Some(format!("lease {} reaches its max TTL in {}s", lease.id, ttl.as_secs()));
            }
            Ok(ttl) => {
                log::info(format!("renewed lease {} for {}s", lease.id, ttl.as_secs()));
                due.failures = 0;
                due.lease = Some(now + jittered(ttl * 2 / 3));
            }
            Err(e) if e.exit() == Exit::Unavailable => {
                let wait = due.backoff(Some(lease.ttl));
                log::warn(format!("renewing lease {}: {e}; trying again in {}s", lease.id, wait.as_secs_f32()));
                due.lease = Some(now + wait);
            }
            Err(e) => return Some(format!("lease {} can no longer be renewed ({e})", lease.id)),
        }
    }
    if let Some(at) = due.token
        && at <= now
    {
        let logged_in = plan.vault.as_ref().is_some_and(|v| !matches!(v.auth, launcher_vault::Auth::Token));
        match current.sources.renew_login().await {
            Ok(None) => due.token = None,
            Ok(Some(ttl)) => {
                let full = *due.token_full.get_or_insert(ttl);
                if ttl + Duration::from_secs(1) < full && logged_in {
                    return Some(format!("the Vault token reaches its max TTL in {}s", ttl.as_secs()));
                }
                if ttl + Duration::from_secs(1) < full {
                    log::warn(format!(
                        "the Vault token the launcher was given expires in {}s and cannot be extended further; \
                         what hangs on it ends with it",
                        ttl.as_secs()
                    ));
                }
                log::debug(format!("renewed the Vault token for {}s", ttl.as_secs()));
                due.token = Some(now + jittered(ttl * 2 / 3));
            }
            Err(e) if e.exit() == Exit::Unavailable => {
                let wait = due.backoff(None);
                log::warn(format!("renewing the Vault token: {e}; trying again in {}s", wait.as_secs_f32()));
                due.token = Some(now + wait);
            }
            Err(e) if logged_in => return Some(format!("the Vault token can no longer be renewed ({e})")),
            Err(e) => {
                log::warn(format!("renewing the Vault token: {e}"));
                due.token = None;
            }
        }
    }
    if due.poll <= now {
        match crate::fetch::version(plan, &current.sources, current.lease.is_some()).await {
            Ok(version) if version.changed(&current.version) => {
                return Some("the secrets changed".into());
            }
            Ok(version) => due.poll = now + next_poll(&settings, version.rotates_in),
            Err(e) => {
                let wait = due.backoff(None);
                log::warn(format!("reading the secrets again: {e}; trying again in {}s", wait.as_secs_f32()));
                due.poll = now + wait;
            }
        }
    }
    None
}

/// What a change came to.
enum Changed {
    Applied,
    /// `--on-change exit`: the app is stopped; the new launch's issue is to be revoked too.
    Exit(Box<Generation>),
}

/// Runs the launch again, then applies `--on-change`.
async fn change(
    plan: &Plan,
    program: &[OsString],
    app: &mut App,
    current: &mut Generation,
    incoming: &mut Incoming,
    attempts: &Attempts,
    reason: &str,
) -> Result<Changed, Error> {
    let settings = plan.supervise.expect("supervising");
    log::info(format!("{reason}: fetching and checking new credentials"));
    // Fresh handlers: a signal forwarded to the app earlier must not stop this attempt.
    let signals = crate::signals::Signals::install()?;
    let mode = Mode::Launch(program.to_vec());
    let (ready, sources) = crate::attempt(plan, &mode, &signals, attempts).await?;
    let checked = ready.checked.ok_or_else(|| Error::msg(Exit::Software, "the connection check did not run"))?;
    let mut next = Generation::new(sources, ready.runtime_dir, ready.lease, ready.version);
    drop(ready.target);
    let env = ready.child;
    // A new login (the old token reached its max TTL) that reads what the app already has:
    // nothing for the app to change.
    if next.lease.is_none() && current.lease.is_none() && !next.version.changed(&current.version) {
        drop(env);
        next.runtime_dir = current.runtime_dir.take();
        next.env = current.env.take();
        let old = std::mem::replace(current, next);
        old.retire("logged in again").await;
        log::info("logged in again; the secrets are unchanged: the app runs on");
        return Ok(Changed::Applied);
    }
    let action = match settings.on_change {
        OnChange::Passfile | OnChange::Signal(_) if !in_place(current, &next, &env) => {
            log::info("the change reaches more than the files (a new user name, host or setting): restarting the app");
            OnChange::Restart
        }
        action => action,
    };
    match action {
        OnChange::Passfile | OnChange::Signal(_) => {
            move_files(next.runtime_dir.as_ref(), current.runtime_dir.as_ref())?;
            // The files now live in the current directory, which the app's environment names.
            std::mem::swap(&mut next.runtime_dir, &mut current.runtime_dir);
            next.env = current.env.take();
            if let OnChange::Signal(s) = action {
                log::info(format!("new credentials written in place; sending {} to the app", s.as_str()));
                app.signal(s);
            } else {
                log::info("new credentials written in place: the app's next connection reads them");
            }
            let old = std::mem::replace(current, next);
            old.retire("the credentials changed").await;
            Ok(Changed::Applied)
        }
        OnChange::Restart => {
            if let Some(status) = stop(app, settings.stop_timeout, incoming).await {
                log::info(format!("the app exited with status {status} before the restart"));
            }
            *app = App::start(program, &env, &checked)?;
            next.env = keep_env(&settings, env);
            let old = std::mem::replace(current, next);
            old.retire("the app restarted with new credentials").await;
            harden::lock_memory();
            Ok(Changed::Applied)
        }
        OnChange::Exit => {
            drop(env);
            stop(app, settings.stop_timeout, incoming).await;
            Ok(Changed::Exit(Box::new(next)))
        }
    }
}

/// Whether the new environment is the current one but for where the files are: then the
/// change can be written into the current files.
fn in_place(current: &Generation, next: &Generation, env: &ChildEnv) -> bool {
    let (Some(kept), Some(old_dir), Some(new_dir)) = (&current.env, &current.runtime_dir, &next.runtime_dir) else {
        return false;
    };
    // The directory as a path (PGSSLROOTCERT, PGPASSFILE) and as the URLs carry it
    // (DATABASE_URL, JDBC_DATABASE_URL: percent-encoded).
    let (old, new) = (old_dir.path().to_string_lossy(), new_dir.path().to_string_lossy());
    let swaps = [(new.to_string(), old.to_string()), (crate::env::encoded(&new), crate::env::encoded(&old))];
    let rewrite = |v: &std::ffi::OsStr| -> Vec<u8> {
        let mut bytes = v.as_encoded_bytes().to_vec();
        for (from, to) in &swaps {
            let (from, to) = (from.as_bytes(), to.as_bytes());
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest = bytes.as_slice();
            while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(to);
                rest = &rest[at + from.len()..];
            }
            out.extend_from_slice(rest);
            bytes = out;
        }
        bytes
    };
    let ours: Vec<(&std::ffi::OsStr, Vec<u8>)> = env.pairs().map(|(k, v)| (k, rewrite(v))).collect();
    let theirs: Vec<(&std::ffi::OsStr, Vec<u8>)> =
        kept.pairs().map(|(k, v)| (k, v.as_encoded_bytes().to_vec())).collect();
    ours == theirs
}

/// Moves every file of `from` over its namesake in `to`, each replaced at once (`rename`): a
/// reader sees the old file or the new one, never half of one.
fn move_files(from: Option<&RuntimeDir>, to: Option<&RuntimeDir>) -> Result<(), Error> {
    let (Some(from), Some(to)) = (from, to) else { return Ok(()) };
    let entries = std::fs::read_dir(from.path())
        .map_err(|e| Error::new(Exit::CantCreate, e).context(format!("reading {}", from.path().display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::new(Exit::CantCreate, e))?;
        let target = to.path().join(entry.file_name());
        std::fs::rename(entry.path(), &target)
            .map_err(|e| Error::new(Exit::CantCreate, e).context(format!("replacing {}", target.display())))?;
    }
    Ok(())
}

/// SIGTERM, up to `timeout` for the app to exit, then SIGKILL. Other signals that arrive
/// meanwhile are forwarded. The app's status, once reaped.
async fn stop(app: &App, timeout: Duration, incoming: &mut Incoming) -> Option<u8> {
    app.signal(Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut killed = false;
    loop {
        if let Some(status) = reap(app.pid) {
            return Some(status);
        }
        tokio::select! {
            event = incoming.next() => {
                if let Event::Signal(s) = event {
                    app.signal(s);
                }
            }
            () = tokio::time::sleep_until(deadline), if !killed => {
                log::warn(format!("the app did not exit {}s after SIGTERM: SIGKILL", timeout.as_secs_f32()));
                app.signal(Signal::SIGKILL);
                killed = true;
            }
        }
    }
}
