//! The one connection: TLS verified as libpq's verify-full would, SCRAM authentication, up to
//! the server's ReadyForQuery (the database exists and the role may connect to it). A
//! [`Checked`] value is the proof it succeeded; `exec` requires one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::config::{ChannelBinding, SslMode, SslNegotiation};

use crate::error::{Error, Exit};
use crate::libpq::hosts::Endpoint;
use crate::libpq::{ChannelBindingMode, Libpq, SessionAttrs};
use crate::target::Target;
use crate::tls::stream::HandshakeFailed;
use crate::tls::{CertInfo, ClientIdentity, Pending, Refusal, Session};

/// What the check saw; printed by `launcher check`, summarized in one line on a normal launch.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `HOST:PORT` as connected.
    pub server: String,
    /// The address dialled when `PGHOSTADDR` is set.
    pub hostaddr: Option<String>,
    /// The servers of the list passed over before this one, and why.
    pub skipped: Vec<Skipped>,
    /// The role.
    pub user: String,
    /// The database.
    pub dbname: String,
    /// Always true: the check only connects with TLS.
    pub ssl: bool,
    /// As the handshake negotiated it, in `pg_stat_ssl`'s words, e.g. `TLSv1.3`.
    pub version: String,
    /// Likewise, OpenSSL's name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The cipher's key size.
    pub bits: i32,
    /// Whether SCRAM channel binding (SCRAM-SHA-256-PLUS, tls-server-end-point) was used.
    pub channel_binding: bool,
    /// Whether revocation lists were loaded and checked.
    pub crl_checked: bool,
    /// The verified chain, leaf to trust anchor.
    pub certificates: Vec<CertInfo>,
    /// Certificates close to expiry.
    pub warnings: Vec<String>,
}

/// A server of the host list the walk passed over.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// `HOST:PORT`.
    pub server: String,
    /// Why, in libpq's words.
    pub reason: String,
}

/// Proof that the check ran and passed. Only [`check`] makes one.
#[derive(Debug)]
pub struct Checked {
    report: Report,
}

impl Checked {
    /// What was seen.
    #[must_use]
    pub fn report(&self) -> &Report {
        &self.report
    }
}

/// The client certificate and key files (what `PGSSLCERT`/`PGSSLKEY` name).
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// The certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Its key (PEM, 0600).
    pub key: std::path::PathBuf,
    /// The same key as PKCS#8 DER (0600), for pgjdbc, which reads no PEM key.
    pub pk8: Option<std::path::PathBuf>,
}

/// How the check runs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Warn when a certificate in the chain expires within this many days.
    pub expiry_warning_days: i64,
    /// How the app's libpq will connect (the time limit and the CRLs too).
    pub libpq: Libpq,
    /// `--driver`.
    pub drivers: Vec<crate::drivers::Driver>,
}

/// Connects to `target` as libpq would, verifying against `root` (a CA file) and the CRLs. A
/// host list is walked as libpq walks it (`PQconnectPoll` in fe-connect.c): the next server
/// after a failed TCP connect or name lookup, a server that is starting up or shutting down
/// (SQLSTATE 57P03), or one whose session does not fit `PGTARGETSESSIONATTRS`; the walk stops
/// at any other failure (TLS, authentication), where libpq stops too. `prefer-standby` walks
/// the list twice: for a standby, then for any server. With `PGLOADBALANCEHOSTS=random` the
/// app's libpq may land on any server of the list, so every reachable one is checked.
pub async fn check(
    target: &Target,
    root: &Path,
    options: &CheckOptions,
    client: Option<ClientIdentity>,
    openssl: Pending,
) -> Result<Checked, Error> {
    let crl = &options.libpq.crl;
    let chain = openssl.load(root, crl.file.as_deref(), crl.dir.as_deref()).map_err(|e| Error::new(Exit::Tls, e))?;
    let trust = Session::new(chain, target.first().host.clone());
    let tls = crate::tls::MakeConnect::new(
        Arc::new(trust.for_host(&target.first().host)),
        client,
        options.libpq.tls,
        options.libpq.sni,
        options.libpq.require_auth.clone(),
        options.libpq.cert_mode,
    );
    let passes: &[SessionAttrs] = match options.libpq.session {
        SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
        one => &[one],
    };
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut chosen: Option<Checked> = None;
    for attrs in passes {
        for (i, endpoint) in target.endpoints.iter().enumerate() {
            let session = Arc::new(trust.for_host(&endpoint.host));
            let tls = tls.with_session(session.clone());
            let min = options.libpq.min_protocol;
            if min > 0 {
                // A session record of its own: the probe's handshake is not the one reported.
                let probe = tls.with_session(Arc::new(trust.for_host(&endpoint.host)));
                if let Some(newest) = newest_protocol(target, i, &probe, options).await.filter(|n| *n < min) {
                    let words = crate::libpq::protocol::too_old(newest, min);
                    let server = server_name(endpoint);
                    return Err(Error::msg(Exit::Config, format!("connection to server at {server} failed: {words}")));
                }
            }
            match attempt(target, i, root, &tls, &session, options, *attrs).await? {
                Attempt::Skipped(reason) => {
                    skipped.push(Skipped { server: server_name(endpoint), reason });
                }
                Attempt::Checked(checked) if chosen.is_none() => {
                    chosen = Some(checked);
                    if !options.libpq.load_balance {
                        break;
                    }
                }
                Attempt::Checked(_) => {}
            }
        }
        if chosen.is_some() {
            break;
        }
    }
    let Some(mut checked) = chosen else {
        let reasons: Vec<String> =
            skipped.iter().map(|s| format!("connection to server at {} failed: {}", s.server, s.reason)).collect();
        return Err(Error::msg(Exit::Unavailable, reasons.join("; ")));
    };
    // In a second pass (prefer-standby), the first pass's refusals are why no standby was taken.
    checked.report.skipped = skipped;
    Ok(checked)
}

/// `HOST:PORT`, as the report and the messages name a server.
fn server_name(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.host, endpoint.port)
}

/// What one server of the list came to.
enum Attempt {
    /// Verified and fit: the check's verdict.
    Checked(Checked),
    /// Passed over, as libpq passes over it, for this reason (libpq's words).
    Skipped(String),
}

/// One connection, to the `i`th server of `target`'s list.
async fn attempt(
    target: &Target,
    i: usize,
    root: &Path,
    tls: &crate::tls::MakeConnect,
    session: &Session,
    options: &CheckOptions,
    attrs: SessionAttrs,
) -> Result<Attempt, Error> {
    let endpoint = &target.endpoints[i];
    let server = server_name(endpoint);

    // One connection, with channel binding as libpq's PGCHANNELBINDING asks (prefer by default:
    // bound when the server offers SCRAM-SHA-256-PLUS, as PostgreSQL over TLS does; not through
    // a pooler that does not). The stream notes what was offered and chosen, for the report.
    // A certificate whose signature has no digest (Ed25519) is where libpq itself fails as soon
    // as the server offers SCRAM-SHA-256-PLUS: the check says what libpq says.
    let mode = options.libpq.channel_binding;
    let started = Instant::now();
    let connected = connect(target, i, tls, options).await;
    // What the handshake and the SASL exchange left: nothing changes once connected.
    let seen = session.seen();
    let sasl = seen.sasl;
    if mode != ChannelBindingMode::Disable
        && sasl.is_some_and(|s| s.offered_plus)
        && let Some(Err(libpq)) = &seen.end_point
    {
        // The server let the unbound login in; libpq would not have sent it. Close cleanly.
        if let Ok(open) = connected {
            open.close().await;
        }
        return Err(Error::msg(Exit::Tls, format!("connection to server at {server} failed: {libpq}")));
    }
    if mode == ChannelBindingMode::Require
        && connected.as_ref().is_err_and(
            |e| matches!(e, Failure::Postgres(e) if launcher_core::error_chain(e).contains("channel binding")),
        )
    {
        return Err(Error::msg(
            Exit::NoPerm,
            format!(
                "connection to server at {server} failed: channel binding is required, but server did not offer \
                 an authentication method that supports channel binding (PGCHANNELBINDING=require)"
            ),
        ));
    }
    let channel_binding = sasl.is_some_and(|s| s.chose_plus);
    let open = match connected {
        Ok(open) => open,
        Err(Failure::Timeout) => {
            return Ok(Attempt::Skipped(format!("timeout expired after {}s", options.libpq.connect_timeout.as_secs())));
        }
        Err(Failure::Postgres(e)) => {
            // Before any TLS (no certificate seen): the TCP connect or the name lookup failed.
            let text = launcher_core::error_chain(&e);
            if seen.refusal.is_none()
                && seen.chain.is_empty()
                && let Some(reason) = text.strip_prefix("error connecting to server: ")
            {
                return Ok(Attempt::Skipped(reason.to_owned()));
            }
            if let Some(db) = e.as_db_error().filter(|db| db.code().code() == "57P03") {
                return Ok(Attempt::Skipped(format!("{} (SQLSTATE 57P03)", db.message())));
            }
            return Err(classify(&e, &server, target, seen.refusal));
        }
    };
    let authenticated = Instant::now();
    let fits = open.session_fits(attrs).await;
    // What the session negotiated comes from the handshake itself: asking the server
    // (pg_stat_ssl) would cost a round trip, and through a TLS-terminating proxy would describe
    // another connection than the one libpq judges.
    let Some(negotiated) = seen.negotiated else {
        return Err(Error::msg(Exit::Software, format!("{server}: the TLS handshake left no session details")));
    };
    // Close the session properly (Terminate, then the socket) before anything execs: otherwise
    // the socket only closes with the exec and the server logs an unexpected EOF.
    open.close().await;
    if let Some(refusal) =
        fits.map_err(|e| Error::msg(Exit::Unavailable, format!("connection to server at {server} failed: {e}")))?
    {
        return Ok(Attempt::Skipped(format!("{refusal} (PGTARGETSESSIONATTRS={})", options.libpq.session.name())));
    }
    log_phases(started, seen.verified, authenticated, options.libpq.direct_tls);
    let certificates = seen.chain;
    let mut warnings = warnings(&certificates, options);
    // The app's drivers judge the chain libpq accepted; without --driver, each family's
    // refusal is a warning.
    let root_pem =
        if crate::tls::chain::is_system(root) { Vec::new() } else { std::fs::read(root).unwrap_or_default() };
    let judged = if options.drivers.is_empty() { crate::drivers::FAMILIES } else { options.drivers.as_slice() };
    for driver in judged {
        if let Err(refusal) =
            crate::drivers::judge(*driver, &seen.served, &endpoint.host, root, &root_pem, &options.libpq.crl)
        {
            if options.drivers.is_empty() {
                warnings.push(format!("{refusal} (the check judges for libpq; --driver names the app's driver)"));
            } else {
                return Err(Error::msg(Exit::Tls, format!("connection to server at {server} failed: {refusal}")));
            }
        }
    }
    Ok(Attempt::Checked(Checked {
        report: Report {
            server,
            hostaddr: endpoint.hostaddr.map(|a| a.to_string()),
            skipped: Vec::new(),
            user: target.user.clone(),
            dbname: target.dbname.clone(),
            ssl: true,
            version: negotiated.version,
            cipher: negotiated.cipher,
            bits: negotiated.bits,
            channel_binding,
            crl_checked: session.crl_checked(),
            certificates,
            warnings,
        },
    }))
}

/// `-v`'s account of the check's time, in milliseconds and in round trips of the link.
fn log_phases(started: Instant, verified: Option<(Instant, Instant, Instant)>, authenticated: Instant, direct: bool) {
    if let Some((began, arrived, verified)) = verified {
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
        // The TCP connect and the SSLRequest's one-byte answer are two round trips and next to
        // no work (with direct TLS, the connect alone is one): the link's round trip, the unit
        // of what follows.
        let (opening, count) = if direct { ("TCP connect", 1.0) } else { ("TCP connect and SSLRequest", 2.0) };
        let rtt = ms(started, began) / count;
        let trips = |t: f64| if rtt > 0.0 { t / rtt } else { 0.0 };
        let (hello, handshake, login) = (ms(began, arrived), ms(arrived, verified), ms(verified, authenticated));
        crate::log::debug(format!(
            "check: {opening} in {:.1} ms ({count} round trip(s) of {rtt:.1} ms), server certificate \
             after {hello:.1} ms ({:.1} RTT: the TLS hello, the server's signature), verified in {handshake:.1} ms \
             ({:.1} RTT), authenticated in {login:.1} ms ({:.1} RTT: TLS finish, SCRAM, backend start), session \
             closed in {:.1} ms",
            ms(started, began),
            trips(hello),
            trips(handshake),
            trips(login),
            ms(authenticated, Instant::now()),
        ));
    }
}

/// Certificates close to expiry, and what the check could not judge.
fn warnings(certificates: &[CertInfo], options: &CheckOptions) -> Vec<String> {
    let mut warnings: Vec<String> = certificates
        .iter()
        .filter(|c| c.days_left < options.expiry_warning_days)
        .map(|c| format!("certificate \"{}\" expires in {} days ({})", c.subject, c.days_left, c.not_after))
        .collect();
    warnings.extend(options.libpq.unjudged_warnings());
    warnings
}

enum Failure {
    Timeout,
    Postgres(tokio_postgres::Error),
}

/// A session the check opened, its connection task driven in the background.
struct Open {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    /// `in_hot_standby` and `default_transaction_read_only` as the server reported them at
    /// start-up (PostgreSQL 14 and later do), which libpq judges without a query.
    in_hot_standby: Option<bool>,
    read_only: Option<bool>,
}

impl Open {
    /// Whether the session fits `attrs` as libpq judges it: `Ok(None)` when it does, else
    /// libpq's reason. A server too old to report the parameters is asked, as libpq asks it.
    async fn session_fits(&self, attrs: SessionAttrs) -> Result<Option<&'static str>, tokio_postgres::Error> {
        let ask = async |sql: &str| -> Result<bool, tokio_postgres::Error> {
            let rows = self.client.simple_query(sql).await?;
            Ok(rows.iter().any(
                |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if matches!(r.get(0), Some("on" | "t"))),
            ))
        };
        let (read_only, in_hot_standby) = match attrs {
            SessionAttrs::Any => return Ok(None),
            SessionAttrs::ReadWrite | SessionAttrs::ReadOnly => match (self.read_only, self.in_hot_standby) {
                (Some(read_only), Some(standby)) => (read_only || standby, standby),
                _ => (ask("SHOW transaction_read_only").await?, false),
            },
            SessionAttrs::Primary | SessionAttrs::Standby | SessionAttrs::PreferStandby => {
                let standby = match self.in_hot_standby {
                    Some(standby) => standby,
                    None => ask("SELECT pg_catalog.pg_is_in_recovery()").await?,
                };
                (false, standby)
            }
        };
        Ok(attrs.refusal(read_only, in_hot_standby))
    }

    /// Terminate, then wait (briefly) for the socket to close.
    async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.connection).await;
    }
}

/// The newest protocol minor version the `i`th server of `target`'s list says it speaks, when
/// asked for 3.2 (its NegotiateProtocolVersion answer, as libpq 18 reads it; `None` when it
/// answers otherwise, which means it speaks 3.2, or when no answer comes: then the check's own
/// connection says what happens). tokio-postgres speaks 3.0 only, so this is a connection of
/// its own, closed after the server's first message, before any password goes out.
async fn newest_protocol(
    target: &Target,
    i: usize,
    tls: &crate::tls::MakeConnect,
    options: &CheckOptions,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
    let endpoint = &target.endpoints[i];
    let ask = async {
        let mut tcp = match endpoint.hostaddr {
            Some(addr) => tokio::net::TcpStream::connect((addr, endpoint.port)).await,
            None => tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await,
        }
        .ok()?;
        if !options.libpq.direct_tls {
            tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.ok()?;
            (tcp.read_u8().await.ok()? == b'S').then_some(())?;
        }
        let connect =
            MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls.clone(), &endpoint.host).ok()?;
        let mut stream = connect.connect(tcp).await.ok()?;
        let startup = crate::libpq::protocol::startup(options.libpq.min_protocol, &target.user, &target.dbname);
        stream.write_all(&startup).await.ok()?;
        stream.flush().await.ok()?;
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != b'v' || !(8..=1024).contains(&len) {
            return None;
        }
        let mut body = vec![0u8; len - 4];
        stream.read_exact(&mut body).await.ok()?;
        crate::libpq::protocol::negotiated_minor(&body)
    };
    tokio::time::timeout(options.libpq.connect_timeout, ask).await.ok().flatten()
}

/// One connection attempt to the `i`th server of `target`'s list.
async fn connect(
    target: &Target,
    i: usize,
    tls: &crate::tls::MakeConnect,
    options: &CheckOptions,
) -> Result<Open, Failure> {
    let endpoint = &target.endpoints[i];
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(endpoint.port)
        .user(&target.user)
        .dbname(&target.dbname)
        .application_name("launcher")
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(if options.libpq.direct_tls { SslNegotiation::Direct } else { SslNegotiation::Postgres })
        .channel_binding(match options.libpq.channel_binding {
            ChannelBindingMode::Require => ChannelBinding::Require,
            ChannelBindingMode::Disable => ChannelBinding::Disable,
            ChannelBindingMode::Prefer => ChannelBinding::Prefer,
        })
        .connect_timeout(options.libpq.connect_timeout);
    if let Some(addr) = endpoint.hostaddr {
        config.hostaddr(addr);
    }
    if let Some(server_options) = &options.libpq.options {
        config.options(server_options);
    }
    if let Some(password) = target.password_for(i) {
        config.password(password.expose());
    }
    let connected =
        tokio::time::timeout(options.libpq.connect_timeout + Duration::from_secs(1), config.connect(tls.clone())).await;
    drop(config);
    match connected {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) => Err(Failure::Postgres(e)),
        Ok(Ok((client, connection))) => {
            let on = |name: &str| connection.parameter(name).map(|v| v == "on");
            let (in_hot_standby, read_only) = (on("in_hot_standby"), on("default_transaction_read_only"));
            Ok(Open { client, connection: tokio::spawn(connection), in_hot_standby, read_only })
        }
    }
}

/// Maps a failed connection to the right exit code and a message in libpq's terms.
fn classify(e: &tokio_postgres::Error, server: &str, target: &Target, refusal: Option<Refusal>) -> Error {
    let prefix = format!("connection to server at {server} failed");
    if let Some(refusal) = refusal {
        return Error::msg(Exit::Tls, format!("{prefix}: {refusal}"));
    }
    if let Some(db) = e.as_db_error() {
        let exit = match db.code().code() {
            // invalid_password, invalid_authorization_specification (pg_hba), insufficient_privilege
            "28P01" | "28000" | "42501" => Exit::NoPerm,
            // invalid_catalog_name: the database does not exist; invalid_parameter_value and
            // undefined_object: a bad PGOPTIONS setting
            "3D000" | "22023" | "42704" => Exit::Config,
            _ => Exit::Unavailable,
        };
        return Error::msg(exit, format!("{prefix}: {} (SQLSTATE {})", db.message(), db.code().code()));
    }
    let text = launcher_core::error_chain(e);
    if text.contains("server does not support TLS") {
        return Error::msg(Exit::Tls, format!("{prefix}: server does not support SSL, but SSL was required"));
    }
    if text.contains("password missing") {
        return Error::msg(
            Exit::NoPerm,
            format!("{prefix}: the server asks for a password and none was given (credentials from {})", target.source),
        );
    }
    if let Some(refused) = chain_find::<crate::tls::stream::AuthRefused>(e) {
        return Error::msg(Exit::NoPerm, format!("{prefix}: {refused}"));
    }
    if let Some(failed) = chain_find::<HandshakeFailed>(e) {
        return Error::msg(Exit::Tls, format!("{prefix}: {failed}"));
    }
    Error::msg(Exit::Unavailable, format!("{prefix}: {text}"))
}

fn chain_find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = cur {
        if let Some(found) = inner.downcast_ref::<T>() {
            return Some(found);
        }
        let wrapped = inner.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if let Some(found) = wrapped.and_then(|w| w.downcast_ref::<T>()) {
            return Some(found);
        }
        cur = inner.source();
    }
    None
}
