//! `PGREQUIREAUTH` (libpq 16+): which authentication the server may ask for, parsed and applied
//! as libpq's `fe-connect.c` (`require_auth` option) and `fe-auth.c` (`check_expected_areq`) do,
//! with their words, found against psql 17 (tests/check.rs). The check applies it to the
//! server's first authentication request, before any password is sent, as libpq does.

/// The methods libpq knows, by their `require_auth` names.
const METHODS: [&str; 6] = ["password", "md5", "gss", "sspi", "scram-sha-256", "none"];

/// The methods a server may use, from `PGREQUIREAUTH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequireAuth {
    /// The value as given, for libpq's message.
    raw: String,
    allowed: Vec<&'static str>,
}

impl RequireAuth {
    /// Parses a value (an empty one is a value: it allows nothing, as libpq has it); the error
    /// is libpq's.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let items: Vec<&str> = if raw.is_empty() { Vec::new() } else { raw.split(',').collect() };
        let negated = items.first().is_some_and(|i| i.starts_with('!'));
        let mut named: Vec<&'static str> = Vec::new();
        for item in &items {
            let method = item.strip_prefix('!').unwrap_or(item);
            match (negated, item.starts_with('!')) {
                (true, false) => {
                    return Err(format!("require_auth method \"{item}\" cannot be mixed with negative methods"));
                }
                (false, true) => {
                    return Err(format!(
                        "negative require_auth method \"{item}\" cannot be mixed with non-negative methods"
                    ));
                }
                _ => {}
            }
            let Some(known) = METHODS.iter().find(|m| **m == method) else {
                return Err(format!("invalid require_auth value: \"{method}\""));
            };
            if named.contains(known) {
                return Err(format!("require_auth method \"{method}\" is specified more than once"));
            }
            named.push(known);
        }
        let allowed = if negated { METHODS.iter().copied().filter(|m| !named.contains(m)).collect() } else { named };
        Ok(Self { raw: raw.to_owned(), allowed })
    }

    /// libpq's refusal of the server's first authentication request (its `R` code), if any.
    #[must_use]
    pub fn refuses(&self, code: u32) -> Option<String> {
        let (method, reason) = match code {
            0 => ("none", "server did not complete authentication"),
            3 => ("password", "server requested a cleartext password"),
            5 => ("md5", "server requested a hashed password"),
            7 => ("gss", "server requested GSSAPI authentication"),
            9 => ("sspi", "server requested SSPI authentication"),
            10 => ("scram-sha-256", "server requested SASL authentication"),
            _ => return None,
        };
        (!self.allowed.contains(&method))
            .then(|| format!("authentication method requirement \"{}\" failed: {reason}", self.raw))
    }
}

#[cfg(test)]
mod tests {
    use super::RequireAuth;

    #[test]
    fn values_and_refusals_as_libpq_17_has_them() {
        let scram = 10;
        assert_eq!(RequireAuth::parse("scram-sha-256").unwrap().refuses(scram), None);
        assert_eq!(
            RequireAuth::parse("password").unwrap().refuses(scram).unwrap(),
            "authentication method requirement \"password\" failed: server requested SASL authentication"
        );
        assert!(RequireAuth::parse("!scram-sha-256").unwrap().refuses(scram).is_some());
        assert_eq!(RequireAuth::parse("!scram-sha-256").unwrap().refuses(3), None);
        assert!(RequireAuth::parse("").unwrap().refuses(scram).is_some());
        assert!(
            RequireAuth::parse("scram-sha-256")
                .unwrap()
                .refuses(0)
                .unwrap()
                .ends_with("did not complete authentication")
        );
        assert_eq!(RequireAuth::parse("none").unwrap().refuses(0), None);
        assert_eq!(RequireAuth::parse("md5,password").unwrap().refuses(3), None);
        assert_eq!(RequireAuth::parse("bogus").unwrap_err(), "invalid require_auth value: \"bogus\"");
        assert_eq!(
            RequireAuth::parse("!password,md5").unwrap_err(),
            "require_auth method \"md5\" cannot be mixed with negative methods"
        );
        assert_eq!(
            RequireAuth::parse("password,!md5").unwrap_err(),
            "negative require_auth method \"!md5\" cannot be mixed with non-negative methods"
        );
        assert_eq!(
            RequireAuth::parse("scram-sha-256,scram-sha-256").unwrap_err(),
            "require_auth method \"scram-sha-256\" is specified more than once"
        );
    }
}
