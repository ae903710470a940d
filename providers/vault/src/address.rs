//! Which Vault addresses are acceptable: `https://` anywhere, plain `http://` only on loopback
//! (a token sent in clear over a network is a token given away).

use std::net::IpAddr;

/// Why a Vault address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Not a URL.
    #[error("\"{0}\" is not a URL")]
    NotUrl(String),
    /// Neither http nor https.
    #[error("\"{0}\" must start with https:// (or http:// on a loopback address)")]
    Scheme(String),
    /// http:// to a non-loopback host.
    #[error("refusing plain http:// to {0}, which is not a loopback address: use https://")]
    PlainHttp(String),
}

/// Accepts `https://…`, and `http://` only to `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn check_address(address: &str) -> Result<(), AddressError> {
    let url = url::Url::parse(address).map_err(|_| AddressError::NotUrl(address.to_owned()))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if loopback { Ok(()) } else { Err(AddressError::PlainHttp(url.host_str().unwrap_or_default().to_owned())) }
        }
        _ => Err(AddressError::Scheme(address.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8200",
            "http://127.9.9.9",
            "http://localhost:8200",
            "http://[::1]:8200",
            "https://vault.example.com",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_address("http://10.0.0.5:8200"), Err(AddressError::PlainHttp("10.0.0.5".into())));
        assert_eq!(check_address("http://vault.example.com"), Err(AddressError::PlainHttp("vault.example.com".into())));
        assert!(matches!(check_address("ftp://x"), Err(AddressError::Scheme(_))));
        assert!(matches!(check_address("not a url"), Err(AddressError::NotUrl(_))));
    }
}
