//! libpq 18's wire protocol versions (`PGMINPROTOCOLVERSION`/`PGMAXPROTOCOLVERSION`: 3.0 or
//! 3.2, not TLS's versions), and the two messages the check needs to learn what a server speaks:
//! a StartupMessage asking for 3.2, and the server's NegotiateProtocolVersion answer. libpq 18
//! with a minimum of 3.2 gives up on a server that answers it speaks only 3.0, before it
//! authenticates, and does not walk on to the next host.

use crate::error::{Error, Exit};
use crate::plan::ParentEnv;

/// The protocol 3 minor versions libpq 18 knows, by its names ("latest" is 3.2 there).
const NAMES: [(&str, u16); 3] = [("3.0", 0), ("3.2", 2), ("latest", 2)];

/// The minor version libpq requires at least: 0 unless `PGMINPROTOCOLVERSION` says 3.2.
pub fn min_minor(env: &ParentEnv) -> Result<u16, Error> {
    // An empty value is a value for libpq 18 (it refuses it).
    let read = |var: &str, setting: &str| match env.raw(var) {
        None => Ok(None),
        Some(v) => NAMES
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, minor)| Some(*minor))
            .ok_or_else(|| Error::msg(Exit::Config, format!("{var}: invalid {setting} value: \"{v}\""))),
    };
    let min = read("PGMINPROTOCOLVERSION", "min_protocol_version")?.unwrap_or(0);
    let max = read("PGMAXPROTOCOLVERSION", "max_protocol_version")?;
    if max.is_some_and(|max| min > max) {
        return Err(Error::msg(
            Exit::Config,
            "PGMINPROTOCOLVERSION/PGMAXPROTOCOLVERSION: \"min_protocol_version\" is greater than \"max_protocol_version\"",
        ));
    }
    Ok(min)
}

/// A StartupMessage for protocol 3.`minor`, as `user` to `dbname`.
#[must_use]
pub fn startup(minor: u16, user: &str, dbname: &str) -> Vec<u8> {
    let mut body = (3u32 << 16 | u32::from(minor)).to_be_bytes().to_vec();
    for (name, value) in [("user", user), ("database", dbname), ("application_name", "launcher")] {
        body.extend(name.as_bytes());
        body.push(0);
        body.extend(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = u32::try_from(body.len() + 4).unwrap_or(u32::MAX).to_be_bytes().to_vec();
    message.extend(body);
    message
}

/// The newest minor version a NegotiateProtocolVersion (`v`) message's body names.
#[must_use]
pub fn negotiated_minor(body: &[u8]) -> Option<u16> {
    let newest = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    // The major version is 3 in the answer too; the minor is what the server speaks.
    u16::try_from(newest & 0xffff).ok()
}

/// libpq 18's words for a server older than the minimum.
#[must_use]
pub fn too_old(newest: u16, min: u16) -> String {
    format!("server only supports protocol version 3.{newest}, but \"min_protocol_version\" was set to 3.{min}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(pairs: &[(&str, &str)]) -> Result<u16, Error> {
        min_minor(&ParentEnv::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn versions_read_as_libpq_18_reads_them() {
        assert_eq!(min(&[]).unwrap(), 0);
        assert_eq!(min(&[("PGMINPROTOCOLVERSION", "3.2")]).unwrap(), 2);
        assert_eq!(min(&[("PGMINPROTOCOLVERSION", "latest"), ("PGMAXPROTOCOLVERSION", "3.2")]).unwrap(), 2);
        assert_eq!(min(&[("PGMAXPROTOCOLVERSION", "latest")]).unwrap(), 0);
        for bad in ["", "3", "3.1", "Latest"] {
            let e = min(&[("PGMINPROTOCOLVERSION", bad)]).unwrap_err();
            assert_eq!(e.to_string(), format!("PGMINPROTOCOLVERSION: invalid min_protocol_version value: \"{bad}\""));
        }
        let e = min(&[("PGMINPROTOCOLVERSION", "3.2"), ("PGMAXPROTOCOLVERSION", "3.0")]).unwrap_err();
        assert!(e.to_string().ends_with("\"min_protocol_version\" is greater than \"max_protocol_version\""), "{e}");
    }

    #[test]
    fn messages_are_the_protocols() {
        let m = startup(2, "u", "d");
        assert_eq!(&m[..8], &[0, 0, 0, u8::try_from(m.len()).unwrap(), 0, 3, 0, 2]);
        assert!(m.ends_with(b"user\0u\0database\0d\0application_name\0launcher\0\0"));
        // NegotiateProtocolVersion from a PostgreSQL 15: newest 3.0, no unknown options.
        assert_eq!(negotiated_minor(&[0, 3, 0, 0, 0, 0, 0, 0]), Some(0));
        assert_eq!(negotiated_minor(&[0, 3]), None);
    }
}
