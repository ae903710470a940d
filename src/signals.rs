//! SIGTERM, SIGINT and SIGHUP while a launch holds what a store issued it. Kubernetes deletes a
//! pod still in `--wait`, systemd stops a unit mid-start, a developer presses Ctrl-C: the
//! default action would end the launcher with a Vault login token, a lease and a database user
//! alive. Caught instead, a signal lets the store requests in flight finish (their answers say
//! what to revoke), stops the connection check at once, revokes, and exits 128 + the signal's
//! number, as a shell reports a process a signal ended. All of it within [`GRACE`].
//!
//! Handlers are installed when the launch starts; `execve` puts the app's dispositions back to
//! their defaults.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::{Error, Exit};

/// How long a caught signal waits for requests in flight and for the revocations, in all.
pub const GRACE: Duration = Duration::from_secs(2);

/// A signal that arrived, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    /// Which one.
    pub signal: Which,
    at: Instant,
}

/// The signals caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// SIGTERM (15): `docker stop`, Kubernetes, systemd.
    Term,
    /// SIGINT (2): Ctrl-C.
    Int,
    /// SIGHUP (1): the terminal went away.
    Hup,
}

impl Caught {
    /// `SIGTERM`, for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self.signal {
            Which::Term => "SIGTERM",
            Which::Int => "SIGINT",
            Which::Hup => "SIGHUP",
        }
    }

    /// The failure the launch ends with.
    #[must_use]
    pub fn error(self) -> Error {
        let exit = match self.signal {
            Which::Term => Exit::Terminated,
            Which::Int => Exit::Interrupted,
            Which::Hup => Exit::HungUp,
        };
        Error::msg(exit, format!("stopped by {} before the app started", self.name()))
    }

    /// What is left of [`GRACE`].
    #[must_use]
    pub fn left(self) -> Duration {
        (self.at + GRACE).saturating_duration_since(Instant::now())
    }
}

/// The handlers, and what they caught. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Signals {
    caught: watch::Receiver<Option<Caught>>,
}

impl Signals {
    /// Installs the handlers (on the current tokio runtime).
    pub fn install() -> Result<Self, Error> {
        let (tx, rx) = watch::channel(None);
        let install =
            |kind| signal(kind).map_err(|e| Error::new(Exit::Software, e).context("installing signal handlers"));
        let (mut term, mut int, mut hup) =
            (install(SignalKind::terminate())?, install(SignalKind::interrupt())?, install(SignalKind::hangup())?);
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = term.recv() => Which::Term,
                _ = int.recv() => Which::Int,
                _ = hup.recv() => Which::Hup,
                // Nobody listens any more (a supervisor's change attempt is over).
                () = tx.closed() => return,
            };
            let _ = tx.send(Some(Caught { signal: first, at: Instant::now() }));
            // Later signals are caught and ignored: the first one is already being acted on.
            tx.closed().await;
            drop((term, int, hup));
        });
        Ok(Self { caught: rx })
    }

    /// The signal caught so far, if any.
    #[must_use]
    pub fn pending(&self) -> Option<Caught> {
        *self.caught.borrow()
    }

    /// Resolves once a signal is caught.
    pub async fn caught(&self) -> Caught {
        let mut rx = self.caught.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(caught) => caught.expect("waited for Some"),
            // The sender lives as long as any receiver.
            Err(_) => std::future::pending().await,
        }
    }

    /// Runs `work`, which holds nothing yet; a signal drops it at once.
    pub async fn abort_on<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        tokio::select! {
            done = work => done,
            caught = self.caught() => Err(caught.error()),
        }
    }

    /// Runs `work`, a store request that may issue something; on a signal it gets what is left
    /// of [`GRACE`] to finish, so that what it issued is known and can be revoked. Returns the
    /// signal with the result, if it came in time.
    pub async fn let_finish<T>(&self, work: impl Future<Output = T>) -> Result<T, (Caught, Option<T>)> {
        let mut work = std::pin::pin!(work);
        tokio::select! {
            done = &mut work => Ok(done),
            caught = self.caught() => Err((caught, tokio::time::timeout(caught.left(), work).await.ok())),
        }
    }
}

/// Runs `cleanup` within what is left of `caught`'s grace, and says so when it runs out.
pub async fn bounded<T>(caught: Caught, cleanup: impl Future<Output = T>) {
    if tokio::time::timeout(caught.left(), cleanup).await.is_err() {
        crate::log::warn(format!(
            "{}: gave up revoking after {}s; what this launch was issued stays valid until it expires",
            caught.name(),
            GRACE.as_secs()
        ));
    }
}
