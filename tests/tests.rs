//! The one integration-test binary: the real `launcher` against real PostgreSQL (TLS, SCRAM,
//! hostssl only) and a real OpenBao dev server, started once for the whole binary by `support`.

// Test modules are private to this binary; `pub` in them only means "shared between tests".
#![allow(unreachable_pub)]

mod support;

mod auth;
mod aws;
mod check;
mod config;
mod delivery;
mod drivers;
mod dynamic;
mod files;
mod flow;
mod ha;
mod hardening;
mod hygiene;
mod image;
mod oracle;
mod pki;
mod ship;
mod supervise;
