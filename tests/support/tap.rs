//! A TCP relay in front of the real PostgreSQL server that keeps what each client sent first
//! (the SSLRequest, then the TLS ClientHello, in the clear), so that a test can compare what the
//! check and libpq put on the wire. It forwards everything unchanged: the server answers.
//! A slow tap also holds each answer for a while, as a distant server would, and tells how many
//! requests were waiting for their answers at once.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How many bytes of each connection are kept: the ClientHello fits well inside.
const KEPT: usize = 16 * 1024;

/// The first bytes each connection sent, in the order they came.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// When a client's bytes arrived (`true`) or an answer was handed over (`false`), per connection.
/// With a request's first line (HTTP), empty for answers.
type Events = Arc<Mutex<Vec<(std::time::Instant, usize, bool, String)>>>;

pub struct Tap {
    pub port: u16,
    seen: Seen,
    events: Events,
}

impl Tap {
    /// Relays 127.0.0.1:(a free port) to 127.0.0.1:`upstream` until the test binary exits.
    pub fn start(upstream: u16) -> Self {
        Self::slow(upstream, std::time::Duration::ZERO)
    }

    /// Like `start`, but each answer is held for `hold` before it is handed over, and a
    /// connection's first bytes wait `hold` too (the TCP handshake a real link would cost): one
    /// round trip takes `hold`.
    pub fn slow(upstream: u16, hold: std::time::Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let events: Events = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let log = events.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let index = {
                    let mut all = record.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (client_r, server_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let record = record.clone();
                let (log_in, log_out) = (log.clone(), log.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(hold);
                    relay(
                        client_r,
                        server_w,
                        Some((&record, index)),
                        std::time::Duration::ZERO,
                        (&log_in, index, true),
                    );
                });
                std::thread::spawn(move || relay(server, client, None, hold, (&log_out, index, false)));
            }
        });
        Self { port, seen, events }
    }

    /// For each PostgreSQL connection after the first `mark`, how many TLS ClientHellos the
    /// client sent in the clear: two when the server answered the first with a HelloRetryRequest.
    pub fn client_hellos_since(&self, mark: usize) -> Vec<usize> {
        let all = self.seen.lock().unwrap();
        all[mark..]
            .iter()
            .map(|bytes| {
                // After the 8-byte SSLRequest, TLS records: type, version (2), length (2), body.
                let mut rest = bytes.get(8..).unwrap_or_default();
                let mut hellos = 0;
                while let [kind, _, _, high, low, body @ ..] = rest {
                    let len = usize::from(*high) << 8 | usize::from(*low);
                    if *kind == 0x16 && body.first() == Some(&0x01) {
                        hellos += 1;
                    }
                    rest = body.get(len..).unwrap_or_default();
                }
                hellos
            })
            .collect()
    }

    /// How many connections sent their first bytes before the first answer was handed over.
    pub fn opened_before_first_answer(&self) -> usize {
        let events = self.events.lock().unwrap();
        let mut opened = std::collections::BTreeSet::new();
        for (_, connection, is_request, _) in events.iter() {
            if !*is_request {
                break;
            }
            opened.insert(*connection);
        }
        opened.len()
    }

    /// When the first request whose first line holds `needle` came in, and when the answer to
    /// it (the next on its connection) was handed over.
    pub fn request(&self, needle: &str) -> Option<(std::time::Instant, Option<std::time::Instant>)> {
        let events = self.events.lock().unwrap();
        let at = events.iter().position(|e| e.2 && e.3.contains(needle))?;
        let connection = events[at].1;
        let answered = events[at..].iter().find(|e| !e.2 && e.1 == connection).map(|e| e.0);
        Some((events[at].0, answered))
    }

    /// When the first client bytes came in.
    pub fn first_request(&self) -> Option<std::time::Instant> {
        self.events.lock().unwrap().iter().find(|e| e.2).map(|e| e.0)
    }

    /// When the last answer was handed over.
    pub fn last_answer(&self) -> Option<std::time::Instant> {
        self.events.lock().unwrap().iter().rev().find(|e| !e.2).map(|e| e.0)
    }

    /// The most requests that were waiting for an answer at the same moment: a client that
    /// sends one request at a time never has more than one.
    pub fn most_in_flight(&self) -> usize {
        let events = self.events.lock().unwrap();
        let mut waiting = std::collections::BTreeSet::new();
        let mut most = 0;
        for (_, connection, is_request, _) in events.iter() {
            if *is_request {
                waiting.insert(*connection);
            } else {
                waiting.remove(connection);
            }
            most = most.max(waiting.len());
        }
        most
    }

    /// How many connections it has relayed so far (a mark for [`Tap::sent_since`]).
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// For each connection after the first `mark`, whether its first bytes contain `needle`.
    pub fn sent_since(&self, mark: usize, needle: &[u8]) -> Vec<bool> {
        let all = self.seen.lock().unwrap();
        all[mark..].iter().map(|b| b.windows(needle.len()).any(|w| w == needle)).collect()
    }
}

/// Copies `from` to `to`, keeping the first bytes in `record` (before forwarding them, so they are
/// recorded by the time the other side can answer). Each chunk is handed over `hold` after it
/// was read (by a second thread, so that chunks read together are held together, as on a link).
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    record: Option<(&Seen, usize)>,
    hold: std::time::Duration,
    (events, connection, is_request): (&Events, usize, bool),
) {
    let (chunks, waiting) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let writer_events = events.clone();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in waiting {
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
            if !is_request {
                writer_events.lock().unwrap().push((std::time::Instant::now(), connection, false, String::new()));
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((record, index)) = &record {
            let mut all = record.lock().unwrap();
            let kept = &mut all[*index];
            let room = KEPT.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
        }
        if is_request {
            let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned();
            events.lock().unwrap().push((std::time::Instant::now(), connection, true, line));
        }
        let due = std::time::Instant::now() + if is_request { std::time::Duration::ZERO } else { hold };
        if chunks.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = writer.join();
}
