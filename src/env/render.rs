//! `launcher env`'s output: `export NAME='…'` for `eval` in a POSIX shell, a dotenv file that
//! every common reader takes back byte-exact (or a refusal), one JSON object.

use std::fmt::Write as _;

use serde_json::json;

use super::ChildEnv;
use crate::cli::EnvFormat;
use crate::error::{Error, Exit};

impl ChildEnv {
    /// The variables the launcher sets, in `format`. A value that `dotenv` cannot carry
    /// unchanged is refused (65), naming the variable.
    pub fn render(&self, format: EnvFormat, reveal: bool) -> Result<String, Error> {
        Ok(match format {
            EnvFormat::Shell => self.shown().fold(String::new(), |mut out, (k, v)| {
                let _ = writeln!(out, "export {k}='{}'", v.shown(reveal).replace('\'', r"'\''"));
                out
            }),
            EnvFormat::Dotenv => {
                let mut out = String::new();
                for (k, v) in self.shown() {
                    let quoted = dotenv_quoted(v.shown(reveal)).ok_or_else(|| {
                        Error::msg(
                            Exit::DataErr,
                            format!(
                                "--format dotenv: {k} holds characters no dotenv quoting carries unchanged through \
                                 bash, python-dotenv and Docker Compose (\"${{\", a carriage return, or a single \
                                 quote beside $, ` or \\): use --format shell or json"
                            ),
                        )
                    })?;
                    let _ = writeln!(out, "{k}={quoted}");
                }
                out
            }
            EnvFormat::Json => {
                let map: serde_json::Map<String, serde_json::Value> =
                    self.shown().map(|(k, v)| (k.to_owned(), json!(v.shown(reveal)))).collect();
                format!("{}\n", serde_json::Value::Object(map))
            }
        })
    }
}

/// `value` quoted so that `set -a; . FILE` in bash and dash, python-dotenv (and so Compose v1)
/// and Compose v2's parser all read back the same bytes and none runs or expands anything:
/// single quotes (literal in all of them, once `'`, `\\` and a trailing `\` are absent), else
/// double quotes escaping only `"` (once `$`, `` ` `` and `\` are absent). python-dotenv
/// expands `${…}` inside either quoting and reads a carriage return as a line break: those
/// values have no quoting at all.
fn dotenv_quoted(value: &str) -> Option<String> {
    if value.contains("${") || value.contains('\r') {
        return None;
    }
    if !value.contains('\'') && !value.contains("\\\\") && !value.ends_with('\\') {
        return Some(format!("'{value}'"));
    }
    if !value.contains(['$', '`', '\\']) {
        return Some(format!("\"{}\"", value.replace('"', "\\\"")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_quoting_is_chosen_per_value_or_refused() {
        assert_eq!(dotenv_quoted(r"a$b`c\d").as_deref(), Some(r"'a$b`c\d'"));
        assert_eq!(dotenv_quoted(r#"it's "x""#).as_deref(), Some(r#""it's \"x\"""#));
        assert_eq!(dotenv_quoted("two\nlines").as_deref(), Some("'two\nlines'"));
        for refused in ["${HOME}", "a\rb", "it's $x", "it's `x`", r"it's \x", r"a\\b'", r"ends\"] {
            assert_eq!(dotenv_quoted(refused), None, "{refused:?}");
        }
        assert_eq!(dotenv_quoted(r"ends\").as_deref(), None);
    }
}
