//! What `launcher check` prints: the human report, and one JSON object in every case (success
//! or failure) for monitoring, with the verdict, the exit code, every warning and the time each
//! phase took. The schema is in the README.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::check::Report;
use crate::cli::OutputFormat;
use crate::error::{Error, Exit, ResultExt};
use crate::log::escape_controls;

static PHASES: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());

/// Records how long a phase took (the last attempt's, under `--wait`).
pub fn phase(name: &'static str, took: Duration) {
    let mut phases = PHASES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    phases.retain(|(n, _)| *n != name);
    phases.push((name, took));
}

fn timings() -> serde_json::Value {
    let phases = PHASES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map: serde_json::Map<String, serde_json::Value> =
        phases.iter().map(|(n, d)| (format!("{n}_ms"), json!((d.as_secs_f64() * 1e4).round() / 10.0))).collect();
    serde_json::Value::Object(map)
}

/// The report of a check that passed, in `format`.
pub fn render(report: &Report, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Human => Ok(human(report)),
        OutputFormat::Json => {
            let mut value = serde_json::to_value(report).exit(Exit::Software)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("verdict".into(), json!("ok"));
                object.insert("exit_code".into(), json!(0));
                object.insert("warnings".into(), json!(crate::log::warnings()));
                object.insert("timings".into(), timings());
            }
            let text = serde_json::to_string_pretty(&value).exit(Exit::Software)?;
            Ok(format!("{text}\n"))
        }
    }
}

/// The JSON object for a check that failed: what a monitor needs without parsing stderr.
#[must_use]
pub fn failure(error: &Error) -> String {
    let value = json!({
        "verdict": error.exit().verdict(),
        "exit_code": error.exit().code(),
        "error": error.to_string(),
        "warnings": crate::log::warnings(),
        "timings": timings(),
    });
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
}

fn human(r: &Report) -> String {
    // Names here come from the server's certificate: no control character reaches the terminal.
    let e = |s: &str| escape_controls(s).into_owned();
    let mut out = String::new();
    let dialled = r.hostaddr.as_ref().map(|a| format!(" (dialled {a})")).unwrap_or_default();
    let _ = writeln!(out, "server:      {}{dialled}", e(&r.server));
    for s in &r.skipped {
        let _ = writeln!(out, "passed over: {}: {}", e(&s.server), e(&s.reason));
    }
    let _ = writeln!(out, "database:    {} as {}", e(&r.dbname), e(&r.user));
    let _ = writeln!(out, "tls:         {} {} ({} bits)", r.version, r.cipher, r.bits);
    let _ = writeln!(
        out,
        "scram:       channel binding {}",
        if r.channel_binding { "used (SCRAM-SHA-256-PLUS)" } else { "not used" }
    );
    for (i, c) in r.certificates.iter().enumerate() {
        let label = if i == 0 { "certificate:" } else { "chain:      " };
        let _ = writeln!(out, "{label} {}", e(&c.subject));
        if !c.sans.is_empty() {
            let _ = writeln!(out, "  names:     {}", e(&c.sans.join(", ")));
        }
        let _ = writeln!(out, "  issuer:    {}", e(&c.issuer));
        let _ = writeln!(out, "  expires:   {} ({} days)", c.not_after, c.days_left);
    }
    let _ =
        writeln!(out, "revocation:  {}", if r.crl_checked { "checked against the CRL" } else { "no CRL configured" });
    for w in &r.warnings {
        let _ = writeln!(out, "warning:     {}", e(w));
    }
    let _ = writeln!(out, "verdict:     ok: libpq with sslmode=verify-full would connect");
    out
}

/// `2026-11-30T21:30:00Z` (civil-from-days, so no date crate is needed for one timestamp).
#[must_use]
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| super::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_074_200), "2026-11-30T21:30:00Z");
    }
}
