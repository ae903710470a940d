//! ECDHE on secp521r1, by OpenSSL, for the check's rustls client.
//!
//! libpq's OpenSSL offers P-521 among its groups; ring has no P-521. A server whose
//! `ssl_ecdh_curve` is `secp521r1` (PostgreSQL accepts one curve, for TLS 1.2 and 1.3 alike)
//! would otherwise refuse the check's handshake while libpq connects. The group is listed,
//! not given a key share: only such a server asks for it (one HelloRetryRequest).

use openssl::bn::BigNumContext;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{NamedGroup, PeerMisbehaved};

/// secp521r1 as a rustls key exchange group.
#[derive(Debug)]
pub struct P521;

/// The group, for a provider's `kx_groups`.
pub static SECP521R1: &dyn SupportedKxGroup = &P521;

/// An uncompressed P-521 point: 0x04, then x and y of 66 bytes each.
const POINT_LEN: usize = 1 + 2 * 66;

fn internal(e: &openssl::error::ErrorStack) -> rustls::Error {
    rustls::Error::General(format!("P-521 key exchange: {e}"))
}

fn group() -> Result<EcGroup, rustls::Error> {
    EcGroup::from_curve_name(Nid::SECP521R1).map_err(|e| internal(&e))
}

impl SupportedKxGroup for P521 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let group = group()?;
        let key = EcKey::generate(&group).map_err(|e| internal(&e))?;
        let mut ctx = BigNumContext::new().map_err(|e| internal(&e))?;
        let pub_key =
            key.public_key().to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx).map_err(|e| internal(&e))?;
        let key = PKey::from_ec_key(key).map_err(|e| internal(&e))?;
        Ok(Box::new(Active { key, pub_key }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

/// One exchange in progress: our ephemeral key (OpenSSL clears it when freed).
struct Active {
    key: PKey<Private>,
    pub_key: Vec<u8>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active").finish_non_exhaustive()
    }
}

impl ActiveKeyExchange for Active {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        // TLS allows only the uncompressed form (RFC 8446 4.2.8.2); OpenSSL checks the point
        // is on the curve.
        if peer_pub_key.len() != POINT_LEN || peer_pub_key[0] != 4 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let group = group()?;
        let mut ctx = BigNumContext::new().map_err(|e| internal(&e))?;
        let point = EcPoint::from_bytes(&group, peer_pub_key, &mut ctx).map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let peer = EcKey::from_public_key(&group, &point)
            .and_then(PKey::from_ec_key)
            .map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let mut deriver = Deriver::new(&self.key).map_err(|e| internal(&e))?;
        deriver.set_peer(&peer).map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let secret = deriver.derive_to_vec().map_err(|e| internal(&e))?;
        Ok(SharedSecret::from(secret))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_bad_points_are_refused() {
        let a = P521.start().unwrap();
        let b = P521.start().unwrap();
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        assert_eq!(a_pub.len(), POINT_LEN);
        let one = a.complete(&b_pub).unwrap();
        let two = b.complete(&a_pub).unwrap();
        assert_eq!(one.secret_bytes(), two.secret_bytes());
        assert_eq!(one.secret_bytes().len(), 66);

        let mut off_curve = b_pub.clone();
        off_curve[POINT_LEN - 1] ^= 1;
        assert!(P521.start().unwrap().complete(&off_curve).is_err());
        assert!(P521.start().unwrap().complete(&b_pub[..POINT_LEN - 1]).is_err());
    }
}
