//! The launcher's few log lines, on stderr, human (`launcher: …`) or JSON (one object a line,
//! `--log-format json`). They carry references, field names, lease ids and TLS facts, never a
//! secret value: callers pass only those.

use std::fmt::Write as _;
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
    if level == "warning" {
        WARNINGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(message.to_owned());
    }
    if JSON.load(Ordering::Relaxed) {
        let line = serde_json::json!({ "level": level, "message": message });
        eprintln!("{line}");
    } else if level == "info" || level == "debug" {
        eprintln!("launcher: {}", escape_controls(message));
    } else {
        eprintln!("launcher: {level}: {}", escape_controls(message));
    }
}

/// Every warning logged so far, in order (for `launcher check --output json`).
#[must_use]
pub fn warnings() -> Vec<String> {
    WARNINGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// `text` with every control character (line breaks, ANSI escapes, DEL, C1) and every Unicode
/// bidirectional override written as an escape: values in human lines come from secrets,
/// certificates and servers, and must neither start a forged `launcher:` line nor drive the
/// terminal.
#[must_use]
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
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

/// One informational line, shown once however often it is logged (under `--wait`, each
/// attempt would repeat where the secrets come from).
pub fn info_once(message: impl std::fmt::Display) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let message = message.to_string();
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !seen.contains(&message) {
        info(&message);
        seen.push(message);
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

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::escape_controls("plain é"), "plain é");
        assert_eq!(
            super::escape_controls("a\nlauncher: error: x\u{1b}[31m\u{202e}\t\r\u{7f}"),
            "a\\nlauncher: error: x\\u{1b}[31m\\u{202e}\\t\\r\\u{7f}"
        );
    }
}
