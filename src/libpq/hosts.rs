//! libpq's host lists (`pqConnectOptions2` in fe-connect.c): `PGHOST`, `PGHOSTADDR` and `PGPORT`
//! as comma-separated lists, one entry per server, in the order libpq tries them. A single port
//! applies to every host; otherwise the counts must match, in libpq's words. Beyond libpq, an
//! entry that names no TCP host (empty, or a Unix socket) is refused: libpq would connect there
//! without TLS, weaker than what the check verified.

use std::net::IpAddr;

use crate::error::{Error, Exit};

/// One server of the list: the name checked against its certificate, the address dialled when
/// `PGHOSTADDR` gives one, and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host name (also the name its certificate must carry).
    pub host: String,
    /// `PGHOSTADDR`'s entry for it, if any: the address actually dialled.
    pub hostaddr: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

/// Where the ports come from.
#[derive(Debug, Clone, Copy)]
pub enum Ports<'a> {
    /// One port for every host (`--port`, the secret's field).
    One(u16),
    /// `PGPORT`'s text, perhaps a list.
    Env(&'a str),
    /// libpq's default, 5432.
    Default,
}

/// `PGHOSTADDR`'s entries (an empty one leaves its host to be resolved).
pub fn parse_hostaddrs(text: &str) -> Result<Vec<Option<IpAddr>>, Error> {
    text.split(',')
        .map(|entry| {
            if entry.is_empty() {
                return Ok(None);
            }
            entry
                .parse::<IpAddr>()
                .map(Some)
                .map_err(|_| Error::msg(Exit::Config, format!("PGHOSTADDR: \"{entry}\" is not a numeric IP address")))
        })
        .collect()
}

/// The servers `hosts` (one name or a list) name, with their ports and addresses.
pub fn endpoints(hosts: &str, ports: Ports<'_>, hostaddrs: &[Option<IpAddr>]) -> Result<Vec<Endpoint>, Error> {
    let names: Vec<&str> = hosts.split(',').collect();
    for name in &names {
        if name.is_empty() {
            return Err(Error::msg(
                Exit::Config,
                format!(
                    "database host list \"{hosts}\" has an empty entry, which libpq reads as a Unix socket (no TLS to \
                     verify): give a TCP host name for each"
                ),
            ));
        }
        if name.starts_with('/') || name.starts_with('@') {
            return Err(Error::msg(
                Exit::Config,
                format!("database host \"{name}\" is a Unix socket, which has no TLS to verify: give a TCP host name"),
            ));
        }
    }
    if !hostaddrs.is_empty() && hostaddrs.len() != names.len() {
        return Err(Error::msg(
            Exit::Config,
            format!("PGHOSTADDR: could not match {} host names to {} hostaddr values", names.len(), hostaddrs.len()),
        ));
    }
    let ports: Vec<u16> = match ports {
        Ports::One(port) => vec![port; names.len()],
        Ports::Default => vec![5432; names.len()],
        Ports::Env(text) => {
            let parsed =
                text.split(',')
                    .map(|entry| {
                        if entry.trim().is_empty() {
                            return Ok(5432);
                        }
                        entry.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                            Error::msg(Exit::Config, format!("PGPORT: \"{entry}\" is not a port number"))
                        })
                    })
                    .collect::<Result<Vec<u16>, Error>>()?;
            match parsed.len() {
                1 => vec![parsed[0]; names.len()],
                n if n == names.len() => parsed,
                n => {
                    return Err(Error::msg(
                        Exit::Config,
                        format!("PGPORT: could not match {n} port numbers to {} hosts", names.len()),
                    ));
                }
            }
        }
    };
    Ok(names
        .iter()
        .zip(ports)
        .enumerate()
        .map(|(i, (name, port))| Endpoint {
            host: (*name).to_owned(),
            hostaddr: hostaddrs.get(i).copied().flatten(),
            port,
        })
        .collect())
}

/// `PGHOST`, `PGPORT` and `PGHOSTADDR` for `endpoints`, as the app's libpq reads them back: one
/// port when all are the same, no `PGHOSTADDR` when no entry has one.
#[must_use]
pub fn render(endpoints: &[Endpoint]) -> (String, String, Option<String>) {
    let join = |f: &dyn Fn(&Endpoint) -> String| endpoints.iter().map(f).collect::<Vec<_>>().join(",");
    let hosts = join(&|e| e.host.clone());
    let ports = if endpoints.windows(2).all(|w| w[0].port == w[1].port) {
        endpoints.first().map_or_else(String::new, |e| e.port.to_string())
    } else {
        join(&|e| e.port.to_string())
    };
    let addrs = endpoints
        .iter()
        .any(|e| e.hostaddr.is_some())
        .then(|| join(&|e| e.hostaddr.map(|a| a.to_string()).unwrap_or_default()));
    (hosts, ports, addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, hostaddr: Option<&str>, port: u16) -> Endpoint {
        Endpoint { host: host.into(), hostaddr: hostaddr.map(|a| a.parse().unwrap()), port }
    }

    #[test]
    fn lists_pair_up_as_libpq_pairs_them() {
        assert_eq!(endpoints("a", Ports::Default, &[]).unwrap(), [ep("a", None, 5432)]);
        assert_eq!(endpoints("a,b", Ports::Env("6000"), &[]).unwrap(), [ep("a", None, 6000), ep("b", None, 6000)]);
        assert_eq!(
            endpoints("a,b,c", Ports::Env("6000,,6002"), &[]).unwrap(),
            [ep("a", None, 6000), ep("b", None, 5432), ep("c", None, 6002)]
        );
        let addrs = parse_hostaddrs(",10.0.0.2").unwrap();
        assert_eq!(
            endpoints("a,b", Ports::One(7000), &addrs).unwrap(),
            [ep("a", None, 7000), ep("b", Some("10.0.0.2"), 7000)]
        );
        let e = endpoints("a,b,c", Ports::Env("1,2"), &[]).unwrap_err();
        assert_eq!(
            (e.exit(), e.to_string()),
            (Exit::Config, "PGPORT: could not match 2 port numbers to 3 hosts".into())
        );
        let e = endpoints("a,b", Ports::Default, &parse_hostaddrs("10.0.0.1").unwrap()).unwrap_err();
        assert!(e.to_string().contains("could not match 2 host names to 1 hostaddr values"), "{e}");
        for bad in ["a,,b", "a,", "a,/run/postgresql", "@abstract"] {
            assert_eq!(endpoints(bad, Ports::Default, &[]).unwrap_err().exit(), Exit::Config, "{bad}");
        }
        for bad in ["6000,x", "0", "70000,1"] {
            let e = endpoints("a,b", Ports::Env(bad), &[]).unwrap_err();
            assert!(e.to_string().contains("is not a port number"), "{bad}: {e}");
        }
        assert!(parse_hostaddrs("10.0.0.1,db").unwrap_err().to_string().contains("\"db\" is not a numeric IP"));
    }

    #[test]
    fn rendered_lists_read_back_the_same() {
        let list = [ep("a", None, 6000), ep("b", Some("10.0.0.2"), 6000)];
        assert_eq!(render(&list), ("a,b".into(), "6000".into(), Some(",10.0.0.2".into())));
        let (hosts, ports, addrs) = render(&[ep("a", None, 1), ep("b", None, 2)]);
        assert_eq!((hosts.as_str(), ports.as_str(), addrs), ("a,b", "1,2", None));
        let back = endpoints(&hosts, Ports::Env(&ports), &[]).unwrap();
        assert_eq!(back, [ep("a", None, 1), ep("b", None, 2)]);
    }
}
