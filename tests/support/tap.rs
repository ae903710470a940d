//! A TCP relay in front of the real PostgreSQL server that keeps what each client sent first
//! (the SSLRequest, then the TLS ClientHello, in the clear), so that a test can compare what the
//! check and libpq put on the wire. It forwards everything unchanged: the server answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How many bytes of each connection are kept: the ClientHello fits well inside.
const KEPT: usize = 16 * 1024;

/// The first bytes each connection sent, in the order they came.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

pub struct Tap {
    pub port: u16,
    seen: Seen,
}

impl Tap {
    /// Relays 127.0.0.1:(a free port) to 127.0.0.1:`upstream` until the test binary exits.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
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
                std::thread::spawn(move || relay(client_r, server_w, Some((&record, index))));
                std::thread::spawn(move || relay(server, client, None));
            }
        });
        Self { port, seen }
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
/// recorded by the time the other side can answer).
fn relay(mut from: TcpStream, mut to: TcpStream, record: Option<(&Seen, usize)>) {
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
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
