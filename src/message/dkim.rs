//! DKIM signing keys and signatures (RFC 6376, Ed25519 per RFC 8463) with
//! mail-auth 0.13.3 on the ring backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter as _, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner as AuthSigner, Signature};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

/// Headers signed when a signer lists none, of which only the ones present
/// in the message are signed.
pub const DEFAULT_SIGNED_HEADERS: [&str; 14] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Feedback-ID",
    "X-Mailcanary-Token",
];

/// Difference between the caller's clock and the system clock above which a
/// signature's `t=` is logged as differing from the message's Date.
const CLOCK_SKEW_LOGGED: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A failure to load a private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM private key found ({reason}); expected BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY")]
    NoPem { reason: String },
    #[error("{kind} keys are not supported for DKIM here")]
    Unsupported { kind: &'static str },
    #[error("invalid {kind} private key: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

/// A failure to sign a message.
#[derive(Debug, thiserror::Error)]
#[error("failed to sign with selector {selector} of {domain}: {reason}")]
pub struct SignError {
    pub domain: String,
    pub selector: String,
    pub reason: String,
}

/// The algorithm of a DKIM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    /// Returns the `k=` tag value of the key record.
    pub fn tag(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.tag())
    }
}

/// A DKIM private key. Cloning shares the key.
#[derive(Clone)]
pub struct DkimKey {
    inner: Arc<KeyInner>,
}

enum KeyInner {
    Rsa {
        key: RsaKey<Sha256>,
        /// RSAPublicKey (PKCS#1) DER.
        public_key: Vec<u8>,
    },
    Ed25519 {
        key: Ed25519Key,
        /// The 32 raw public key bytes.
        public_key: Vec<u8>,
    },
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key never appears in logs or records.
        formatter
            .debug_struct("DkimKey")
            .field("type", &self.key_type())
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// Loads an RSA key (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8
    /// `BEGIN PRIVATE KEY`) or an Ed25519 key (PKCS#8).
    pub fn from_pem(pem: &str) -> Result<DkimKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|error| KeyError::NoPem { reason: error.to_string() })?;

        let inner = match der {
            PrivateKeyDer::Pkcs1(_) => rsa_key(der)?,
            PrivateKeyDer::Pkcs8(ref pkcs8) => {
                if is_ed25519_pkcs8(pkcs8.secret_pkcs8_der()) {
                    // OpenSSL writes Ed25519 PKCS#8 v1 without the public key,
                    // which ring accepts only through the unchecked loader.
                    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
                        .map_err(|error| KeyError::Invalid { kind: "Ed25519", reason: error.to_string() })?;
                    let public_key = key.public_key();
                    KeyInner::Ed25519 { key, public_key }
                } else {
                    rsa_key(der)?
                }
            }
            PrivateKeyDer::Sec1(_) => return Err(KeyError::Unsupported { kind: "EC (SEC1)" }),
            _ => return Err(KeyError::Unsupported { kind: "this PEM" }),
        };
        Ok(DkimKey { inner: Arc::new(inner) })
    }

    pub fn key_type(&self) -> KeyType {
        match &*self.inner {
            KeyInner::Rsa { .. } => KeyType::Rsa,
            KeyInner::Ed25519 { .. } => KeyType::Ed25519,
        }
    }

    /// Returns the modulus size of an RSA key, or `None` for Ed25519.
    pub fn bits(&self) -> Option<usize> {
        match &*self.inner {
            KeyInner::Rsa { public_key, .. } => rsa_modulus_bits(public_key),
            KeyInner::Ed25519 { .. } => None,
        }
    }

    /// Formats the TXT value to publish at `SELECTOR._domainkey.DOMAIN`, such as
    /// `v=DKIM1; k=rsa; p=MIIB...`. An RSA key is given as
    /// SubjectPublicKeyInfo, an Ed25519 key as its raw 32 bytes (RFC 8463).
    pub fn public_key_record(&self) -> String {
        let encoded = match &*self.inner {
            KeyInner::Rsa { public_key, .. } => base64::engine::general_purpose::STANDARD.encode(rsa_spki(public_key)),
            KeyInner::Ed25519 { public_key, .. } => base64::engine::general_purpose::STANDARD.encode(public_key),
        };
        format!("v=DKIM1; k={}; p={encoded}", self.key_type())
    }
}

fn rsa_key(der: PrivateKeyDer<'_>) -> Result<KeyInner, KeyError> {
    let key = RsaKey::<Sha256>::from_key_der(der)
        .map_err(|error| KeyError::Invalid { kind: "RSA", reason: error.to_string() })?;
    let public_key = key.public_key();
    Ok(KeyInner::Rsa { key, public_key })
}

/// Returns whether a PKCS#8 key's algorithm is Ed25519 (OID 1.3.101.112).
fn is_ed25519_pkcs8(der: &[u8]) -> bool {
    const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
    der.windows(ED25519_OID.len()).take(24).any(|window| window == ED25519_OID)
}

/// Reads the modulus length of an RSAPublicKey DER, ignoring a leading zero
/// byte that keeps the integer positive.
fn rsa_modulus_bits(public_key: &[u8]) -> Option<usize> {
    let (tag, sequence, _) = der_element(public_key)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, modulus, _) = der_element(sequence)?;
    if tag != 0x02 {
        return None;
    }
    let significant = modulus.iter().position(|&byte| byte != 0)?;
    let first = modulus[significant];
    Some((modulus.len() - significant) * 8 - first.leading_zeros() as usize)
}

/// Splits one DER element into its tag, its content and the bytes after it.
fn der_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first_length = *bytes.get(1)?;
    let (length, header) = if first_length & 0x80 == 0 {
        (usize::from(first_length), 2)
    } else {
        let count = usize::from(first_length & 0x7f);
        let length = bytes.get(2..2 + count)?.iter().fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, 2 + count)
    };
    let content = bytes.get(header..header + length)?;
    Some((tag, content, &bytes[header + length..]))
}

/// Wraps an RSAPublicKey DER in a SubjectPublicKeyInfo (RFC 5280), the form
/// RFC 6376 section 3.6.1 requires in `p=`.
fn rsa_spki(public_key: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier: rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
    const ALGORITHM: [u8; 15] =
        [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(public_key);

    let mut content = ALGORITHM.to_vec();
    content.extend(der_wrap(0x03, &bit_string));
    der_wrap(0x30, &content)
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut output = vec![tag];
    let length = content.len();
    if length < 0x80 {
        output.push(length as u8);
    } else {
        let bytes: Vec<u8> = length.to_be_bytes().into_iter().skip_while(|&byte| byte == 0).collect();
        output.push(0x80 | bytes.len() as u8);
        output.extend(bytes);
    }
    output.extend_from_slice(content);
    output
}

/// A key shared with the [`DkimKey`] it came from, because mail-auth's
/// signer takes ownership of its key and ring keys cannot be cloned.
struct SharedKey(Arc<KeyInner>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match &*self.0 {
            KeyInner::Rsa { key, .. } => key.sign(input),
            KeyInner::Ed25519 { key, .. } => key.sign(input),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match &*self.0 {
            KeyInner::Rsa { key, .. } => key.algorithm(),
            KeyInner::Ed25519 { key, .. } => key.algorithm(),
        }
    }
}

/// One DKIM signature to add: the signing domain (`d=`), the selector
/// (`s=`), the key, the headers to sign (empty for
/// [`DEFAULT_SIGNED_HEADERS`]) and an optional lifetime (`x=`).
#[derive(Debug, Clone)]
pub struct DkimSigner {
    pub domain: String,
    pub selector: String,
    pub key: DkimKey,
    pub headers: Vec<String>,
    pub expiration: Option<Duration>,
}

impl DkimSigner {
    fn signature(&self, message: &[u8]) -> Result<Signature, SignError> {
        // mail-auth 0.13.3 lists every requested name in h=, present or not,
        // and a listed absent header may not be added later. The defaults are
        // cut to the headers present, so a relay that adds List-Unsubscribe or
        // Feedback-ID keeps the signature valid. An explicit list is kept as
        // written, which lets a sender lock absent headers out on purpose.
        let headers: Vec<String> = if self.headers.is_empty() {
            let present = header_names(message);
            DEFAULT_SIGNED_HEADERS
                .iter()
                .filter(|name| present.iter().any(|found| found.eq_ignore_ascii_case(name)))
                .map(|name| (*name).to_owned())
                .collect()
        } else {
            self.headers.clone()
        };
        let expiration = self.expiration.map(|lifetime| lifetime.as_secs());

        let key = SharedKey(Arc::clone(&self.key.inner));
        self.configure(AuthSigner::from_key(key), headers, expiration).sign(message).map_err(|error| SignError {
            domain: self.domain.clone(),
            selector: self.selector.clone(),
            reason: error.to_string(),
        })
    }

    fn configure(
        &self,
        signer: AuthSigner<SharedKey, mail_auth::dkim::NeedDomain>,
        headers: Vec<String>,
        expiration: Option<u64>,
    ) -> AuthSigner<SharedKey, mail_auth::dkim::Done> {
        let signer = signer
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(headers)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        match expiration {
            Some(seconds) => signer.expiration(seconds),
            None => signer,
        }
    }
}

/// Lists the field names of a message's header, up to the first empty line.
fn header_names(message: &[u8]) -> Vec<&str> {
    let mut names = Vec::new();
    for line in message.split(|&byte| byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        if let Some(colon) = line.iter().position(|&byte| byte == b':')
            && let Ok(name) = std::str::from_utf8(&line[..colon])
        {
            names.push(name.trim_end());
        }
    }
    names
}

/// Prepends one DKIM-Signature header per signer, in the order given, each
/// with relaxed/relaxed canonicalization over the unsigned message.
///
/// `now` is the caller's clock, the one the Date header was written from.
// NOTE: mail-auth 0.13.3 reads the system clock for `t=` (and so for `x=`)
// and offers no way to pass a time in. `now` only serves to log a skew between
// the two clocks, and a test with a fixed clock gets the real signing time.
pub fn sign(message: &[u8], signers: &[DkimSigner], now: DateTime<Utc>) -> Result<Vec<u8>, SignError> {
    let skew = Utc::now() - now;
    if skew.abs() > CLOCK_SKEW_LOGGED {
        tracing::debug!(%now, skew_seconds = skew.num_seconds(), "DKIM t= comes from the system clock, not the run clock");
    }

    let mut signed = Vec::with_capacity(message.len() + 600 * signers.len());
    for signer in signers {
        let signature = signer.signature(message)?;
        signed.extend_from_slice(signature.to_header().as_bytes());
    }
    signed.extend_from_slice(message);
    Ok(signed)
}
