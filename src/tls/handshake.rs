//! Handshake signatures by OpenSSL, both ways: the server's (TLS 1.3 CertificateVerify, TLS 1.2
//! ServerKeyExchange) checked as libpq's OpenSSL checks it, for the schemes libpq's OpenSSL
//! offers; and the client certificate's, made with any key libpq's OpenSSL can sign with.
//!
//! rustls' ring provider would refuse what libpq accepts: RSA keys under 2048 bits (a system
//! whose OpenSSL security level is lowered to 1 still connects to such a server with libpq),
//! P-521, Ed448 and RSASSA-PSS keys (ring has none of them). The server's key is the one
//! OpenSSL read from the certificate the chain verifier already accepted; its size was judged
//! there, at the configured security level.

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer as OpensslSigner, Verifier};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

/// rsa_pss_pss_sha256/384/512 (RFC 8446): RSASSA-PSS signatures by an RSASSA-PSS key, which
/// rustls has no names for.
const RSA_PSS_PSS: [SignatureScheme; 3] =
    [SignatureScheme::Unknown(0x0809), SignatureScheme::Unknown(0x080a), SignatureScheme::Unknown(0x080b)];

/// The schemes for an rsaEncryption key, PSS first (TLS 1.3 allows only those).
const RSA: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

/// The schemes offered in the ClientHello, in OpenSSL 3's default order (less its SHA-1 and
/// SHA-224 ones, which its default security level refuses).
pub(super) fn offered() -> Vec<SignatureScheme> {
    [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP521_SHA512,
        SignatureScheme::ED25519,
        SignatureScheme::ED448,
    ]
    .into_iter()
    .chain(RSA_PSS_PSS)
    .chain(RSA)
    .collect()
}

/// Why a handshake signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalid {
    /// A scheme not offered, or not one for this kind of key (or, in TLS 1.3, this curve).
    WrongScheme,
    /// The key could not be read.
    BadKey,
    /// The signature does not verify.
    BadSignature,
}

/// Checks `signature` over `message` with the key in `spki` (DER SubjectPublicKeyInfo).
/// `tls13` binds ECDSA schemes to their curve, as TLS 1.3 does.
pub(super) fn verify(
    scheme: SignatureScheme,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
    tls13: bool,
) -> Result<(), Invalid> {
    let key = PKey::public_key_from_der(spki).map_err(|_| Invalid::BadKey)?;
    let ok = match scheme {
        SignatureScheme::ED25519 | SignatureScheme::ED448 => {
            let id = if scheme == SignatureScheme::ED25519 { Id::ED25519 } else { Id::ED448 };
            if key.id() != id {
                return Err(Invalid::WrongScheme);
            }
            Verifier::new_without_digest(&key).and_then(|mut v| v.verify_oneshot(signature, message))
        }
        SignatureScheme::ECDSA_NISTP256_SHA256
        | SignatureScheme::ECDSA_NISTP384_SHA384
        | SignatureScheme::ECDSA_NISTP521_SHA512 => {
            let (md, curve) = match scheme {
                SignatureScheme::ECDSA_NISTP256_SHA256 => (MessageDigest::sha256(), Nid::X9_62_PRIME256V1),
                SignatureScheme::ECDSA_NISTP384_SHA384 => (MessageDigest::sha384(), Nid::SECP384R1),
                _ => (MessageDigest::sha512(), Nid::SECP521R1),
            };
            let on_curve = key.ec_key().ok().and_then(|k| k.group().curve_name());
            if key.id() != Id::EC || (tls13 && on_curve != Some(curve)) {
                return Err(Invalid::WrongScheme);
            }
            digest_verify(&key, md, None, message, signature)
        }
        SignatureScheme::RSA_PSS_SHA256 | SignatureScheme::RSA_PSS_SHA384 | SignatureScheme::RSA_PSS_SHA512 => {
            if key.id() != Id::RSA {
                return Err(Invalid::WrongScheme);
            }
            digest_verify(&key, rsa_digest(scheme), Some(Padding::PKCS1_PSS), message, signature)
        }
        _ if RSA_PSS_PSS.contains(&scheme) => {
            if key.id() != Id::RSA_PSS {
                return Err(Invalid::WrongScheme);
            }
            digest_verify(&key, rsa_digest(scheme), Some(Padding::PKCS1_PSS), message, signature)
        }
        SignatureScheme::RSA_PKCS1_SHA256 | SignatureScheme::RSA_PKCS1_SHA384 | SignatureScheme::RSA_PKCS1_SHA512
            if !tls13 =>
        {
            if key.id() != Id::RSA {
                return Err(Invalid::WrongScheme);
            }
            digest_verify(&key, rsa_digest(scheme), Some(Padding::PKCS1), message, signature)
        }
        _ => return Err(Invalid::WrongScheme),
    };
    match ok {
        Ok(true) => Ok(()),
        _ => Err(Invalid::BadSignature),
    }
}

/// A client certificate's key, held by OpenSSL (which clears it when freed), signing for
/// rustls: ring would refuse P-521, Ed448 and RSASSA-PSS keys, and RSA keys under 2048 bits,
/// which libpq's OpenSSL signs with.
pub(super) struct ClientKey {
    key: PKey<Private>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("type", &self.key.id()).finish_non_exhaustive()
    }
}

impl ClientKey {
    pub(super) fn new(key: PKey<Private>) -> Result<Self, openssl::error::ErrorStack> {
        let spki = key.public_key_to_der()?;
        Ok(Self { key, spki })
    }

    /// The schemes this key signs with, in the order it prefers them.
    fn schemes(&self) -> Vec<SignatureScheme> {
        match self.key.id() {
            Id::EC => match self.key.ec_key().ok().and_then(|k| k.group().curve_name()) {
                Some(Nid::X9_62_PRIME256V1) => vec![SignatureScheme::ECDSA_NISTP256_SHA256],
                Some(Nid::SECP384R1) => vec![SignatureScheme::ECDSA_NISTP384_SHA384],
                Some(Nid::SECP521R1) => vec![SignatureScheme::ECDSA_NISTP521_SHA512],
                _ => vec![],
            },
            Id::ED25519 => vec![SignatureScheme::ED25519],
            Id::ED448 => vec![SignatureScheme::ED448],
            Id::RSA_PSS => RSA_PSS_PSS.to_vec(),
            Id::RSA => RSA.to_vec(),
            _ => vec![],
        }
    }
}

impl SigningKey for ClientKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.schemes().into_iter().find(|s| offered.contains(s))?;
        Some(Box::new(ClientSigner { key: self.key.clone(), scheme }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.key.id() {
            Id::RSA | Id::RSA_PSS => SignatureAlgorithm::RSA,
            Id::EC => SignatureAlgorithm::ECDSA,
            Id::ED25519 => SignatureAlgorithm::ED25519,
            Id::ED448 => SignatureAlgorithm::ED448,
            _ => SignatureAlgorithm::Unknown(0),
        }
    }
}

/// One signature with a [`ClientKey`], in the scheme chosen for the server.
struct ClientSigner {
    key: PKey<Private>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for ClientSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSigner").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl Signer for ClientSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let fail = |e: openssl::error::ErrorStack| rustls::Error::General(format!("client certificate signature: {e}"));
        let mut signer = match self.key.id() {
            Id::ED25519 | Id::ED448 => OpensslSigner::new_without_digest(&self.key).map_err(fail)?,
            _ => {
                let md = match self.scheme {
                    SignatureScheme::ECDSA_NISTP384_SHA384 => MessageDigest::sha384(),
                    SignatureScheme::ECDSA_NISTP521_SHA512 => MessageDigest::sha512(),
                    other => rsa_digest(other),
                };
                let mut signer = OpensslSigner::new(md, &self.key).map_err(fail)?;
                if matches!(self.key.id(), Id::RSA | Id::RSA_PSS) {
                    let pkcs1 = matches!(
                        self.scheme,
                        SignatureScheme::RSA_PKCS1_SHA256
                            | SignatureScheme::RSA_PKCS1_SHA384
                            | SignatureScheme::RSA_PKCS1_SHA512
                    );
                    if pkcs1 {
                        signer.set_rsa_padding(Padding::PKCS1).map_err(fail)?;
                    } else {
                        signer.set_rsa_padding(Padding::PKCS1_PSS).map_err(fail)?;
                        signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).map_err(fail)?;
                        signer.set_rsa_mgf1_md(md).map_err(fail)?;
                    }
                }
                signer
            }
        };
        signer.sign_oneshot_to_vec(message).map_err(fail)
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

fn rsa_digest(scheme: SignatureScheme) -> MessageDigest {
    match scheme {
        SignatureScheme::RSA_PSS_SHA384 | SignatureScheme::RSA_PKCS1_SHA384 | SignatureScheme::Unknown(0x080a) => {
            MessageDigest::sha384()
        }
        SignatureScheme::RSA_PSS_SHA512 | SignatureScheme::RSA_PKCS1_SHA512 | SignatureScheme::Unknown(0x080b) => {
            MessageDigest::sha512()
        }
        _ => MessageDigest::sha256(),
    }
}

fn digest_verify(
    key: &PKey<Public>,
    md: MessageDigest,
    padding: Option<Padding>,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, openssl::error::ErrorStack> {
    let mut v = Verifier::new(md, key)?;
    if let Some(padding) = padding {
        v.set_rsa_padding(padding)?;
        if padding == Padding::PKCS1_PSS {
            // TLS: the salt is as long as the digest, MGF1 uses the same digest (RFC 8446 4.2.3).
            v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            v.set_rsa_mgf1_md(md)?;
        }
    }
    v.verify_oneshot(signature, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::pkey::Private;
    use openssl::sign::Signer;

    fn sign(key: &PKey<Private>, md: Option<MessageDigest>, padding: Option<Padding>, msg: &[u8]) -> Vec<u8> {
        let mut s = match md {
            Some(md) => Signer::new(md, key).unwrap(),
            None => Signer::new_without_digest(key).unwrap(),
        };
        if let (Some(p), Some(md)) = (padding, md) {
            s.set_rsa_padding(p).unwrap();
            if p == Padding::PKCS1_PSS {
                s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
                s.set_rsa_mgf1_md(md).unwrap();
            }
        }
        s.sign_oneshot_to_vec(msg).unwrap()
    }

    /// An RSASSA-PSS key, as `openssl genpkey -algorithm RSA-PSS` makes one.
    fn rsa_pss_key() -> PKey<Private> {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .unwrap();
        PKey::private_key_from_pem(&out.stdout).unwrap()
    }

    #[test]
    fn schemes_ring_lacks_verify_and_bindings_hold() {
        let msg = b"handshake transcript";
        let p521 =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP521R1).unwrap()).unwrap()).unwrap();
        let spki = p521.public_key_to_der().unwrap();
        let sig = sign(&p521, Some(MessageDigest::sha512()), None, msg);
        assert_eq!(verify(SignatureScheme::ECDSA_NISTP521_SHA512, &spki, msg, &sig, true), Ok(()));
        assert_eq!(
            verify(SignatureScheme::ECDSA_NISTP521_SHA512, &spki, b"other", &sig, true),
            Err(Invalid::BadSignature)
        );
        // TLS 1.3 binds the curve to the scheme; TLS 1.2 does not.
        let sig256 = sign(&p521, Some(MessageDigest::sha256()), None, msg);
        assert_eq!(
            verify(SignatureScheme::ECDSA_NISTP256_SHA256, &spki, msg, &sig256, true),
            Err(Invalid::WrongScheme)
        );
        assert_eq!(verify(SignatureScheme::ECDSA_NISTP256_SHA256, &spki, msg, &sig256, false), Ok(()));

        let rsa1024 = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let spki = rsa1024.public_key_to_der().unwrap();
        let pss = sign(&rsa1024, Some(MessageDigest::sha256()), Some(Padding::PKCS1_PSS), msg);
        assert_eq!(verify(SignatureScheme::RSA_PSS_SHA256, &spki, msg, &pss, true), Ok(()));
        assert_eq!(verify(SignatureScheme::RSA_PSS_SHA384, &spki, msg, &pss, true), Err(Invalid::BadSignature));
        let pkcs1 = sign(&rsa1024, Some(MessageDigest::sha256()), Some(Padding::PKCS1), msg);
        assert_eq!(verify(SignatureScheme::RSA_PKCS1_SHA256, &spki, msg, &pkcs1, false), Ok(()));
        // PKCS#1 v1.5 is not a TLS 1.3 handshake signature.
        assert_eq!(verify(SignatureScheme::RSA_PKCS1_SHA256, &spki, msg, &pkcs1, true), Err(Invalid::WrongScheme));
        assert_eq!(verify(SignatureScheme::ECDSA_NISTP256_SHA256, &spki, msg, &pkcs1, true), Err(Invalid::WrongScheme));
        // rsa_pss_pss_* is for RSASSA-PSS keys only, rsa_pss_rsae_* for rsaEncryption keys only.
        assert_eq!(verify(RSA_PSS_PSS[0], &spki, msg, &pss, true), Err(Invalid::WrongScheme));

        // What a ClientKey signs, the verifier accepts, for each kind of key.
        let keys = [
            p521.clone(),
            rsa1024.clone(),
            PKey::generate_ed25519().unwrap(),
            PKey::generate_ed448().unwrap(),
            rsa_pss_key(),
        ];
        for key in keys {
            let spki = key.public_key_to_der().unwrap();
            let client = ClientKey::new(key).unwrap();
            let signer = client.choose_scheme(&offered()).unwrap();
            let sig = signer.sign(msg).unwrap();
            assert_eq!(verify(signer.scheme(), &spki, msg, &sig, true), Ok(()), "{:?}", signer.scheme());
        }
        let ed448 = PKey::generate_ed448().unwrap();
        let spki = ed448.public_key_to_der().unwrap();
        let sig = sign(&ed448, None, None, msg);
        assert_eq!(verify(SignatureScheme::ED448, &spki, msg, &sig, true), Ok(()));
        assert_eq!(verify(SignatureScheme::ED25519, &spki, msg, &sig, true), Err(Invalid::WrongScheme));
    }
}
