//! The launcher's few log lines, on stderr, human (`launcher: …`) or JSON (one object a line,
//! `--log-format json`). They carry references, field names, lease ids and TLS facts, never a
//! secret value: callers pass only those.

use std::sync::atomic::{AtomicU8, Ordering};

const QUIET: u8 = 0;
const NORMAL: u8 = 1;
const VERBOSE: u8 = 2;

static LEVEL: AtomicU8 = AtomicU8::new(NORMAL);
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets what is shown: `--quiet` keeps warnings and errors, `-v` adds detail lines.
pub fn configure(quiet: bool, verbose: bool, json: bool) {
    let level = if quiet {
        QUIET
    } else if verbose {
        VERBOSE
    } else {
        NORMAL
    };
    LEVEL.store(level, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
}

fn emit(level: &str, message: &str) {
    if JSON.load(Ordering::Relaxed) {
        let line = serde_json::json!({ "level": level, "message": message });
        eprintln!("{line}");
    } else if level == "info" || level == "debug" {
        eprintln!("launcher: {message}");
    } else {
        eprintln!("launcher: {level}: {message}");
    }
}

/// A detail line, shown with `-v`.
pub fn debug(message: impl std::fmt::Display) {
    if LEVEL.load(Ordering::Relaxed) >= VERBOSE {
        emit("debug", &message.to_string());
    }
}

/// One informational line.
pub fn info(message: impl std::fmt::Display) {
    if LEVEL.load(Ordering::Relaxed) >= NORMAL {
        emit("info", &message.to_string());
    }
}

/// One warning line.
pub fn warn(message: impl std::fmt::Display) {
    emit("warning", &message.to_string());
}

/// The final error line.
pub fn error(message: impl std::fmt::Display) {
    emit("error", &message.to_string());
}
