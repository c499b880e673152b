//! TLS for STARTTLS (RFC 3207) with rustls and the ring provider.
//!
//! The certificate is always checked against the web PKI roots and any extra
//! CAs, and the result is recorded. Without verification the handshake goes
//! on whatever the result, as MTAs do for opportunistic STARTTLS to MX hosts,
//! whose certificates often do not match their names.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::x509::X509Name;

use super::record::TlsInfo;

/// The checks applied to the server's certificate in the STARTTLS handshake.
#[derive(Debug, Clone, Default)]
pub struct TlsPolicy {
    /// Abort the handshake when the certificate does not verify. Off, the
    /// result is only recorded in [`TlsInfo::verified`].
    pub verify: bool,
    /// CA certificates trusted besides the web PKI roots (webpki-roots).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The name sent as SNI and checked against the certificate; the MX host
    /// name when absent.
    pub server_name: Option<String>,
}

/// The result of the certificate check, shared between the verifier inside
/// rustls and the client that records it.
pub type VerifyResult = Arc<Mutex<Option<Result<(), String>>>>;

/// Builds the client configuration for one connection, with a verifier that
/// stores its result in the returned slot.
pub fn client_config(policy: &TlsPolicy) -> Result<(Arc<ClientConfig>, VerifyResult), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (index, certificate) in policy.extra_roots.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|error| format!("extra CA certificate {} is invalid: {error}", index + 1))?;
    }

    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| format!("building the certificate verifier failed: {error}"))?;
    let result = VerifyResult::default();
    let verifier = RecordingVerifier { webpki, enforce: policy.verify, result: result.clone() };

    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("selecting the TLS versions failed: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), result))
}

/// Parses the name to send as SNI and to check the certificate against.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|error| format!("invalid TLS server name {name:?}: {error}"))
}

/// Runs the webpki verification and stores its result. Handshake signatures
/// are always checked, so the peer must hold the key of the certificate it
/// sent, verified or not.
#[derive(Debug)]
struct RecordingVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    enforce: bool,
    result: VerifyResult,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        let recorded = verdict.as_ref().map(|_| ()).map_err(ToString::to_string);
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(recorded);
        }

        match verdict {
            Ok(verified) => Ok(verified),
            Err(error) if self.enforce => Err(error),
            Err(error) => {
                tracing::debug!("certificate not verified, continuing without verification: {error}");
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Reads the negotiated parameters and the peer certificate's names from a
/// finished handshake.
pub fn tls_info(connection: &rustls::ClientConnection, verify_result: &VerifyResult) -> TlsInfo {
    let version = match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .map_or_else(|| "unknown".to_owned(), |suite| format!("{:?}", suite.suite()));

    let peer = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|certificate| x509_parser::parse_x509_certificate(certificate).ok());
    let (peer_subject, peer_issuer) = match &peer {
        Some((_, certificate)) => (Some(rfc4514(certificate.subject())), Some(rfc4514(certificate.issuer()))),
        None => (None, None),
    };

    let verified = verify_result.lock().map(|slot| matches!(*slot, Some(Ok(())))).unwrap_or(false);

    TlsInfo { version, cipher, peer_subject, peer_issuer, verified }
}

/// Formats a distinguished name as RFC 4514 does: the last RDN first, RDNs
/// separated by `,`, attributes of one RDN by `+`, values escaped, and values
/// that are not strings written as `#` and their DER in hex.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();

    for rdn in name.iter_rdn() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            let key =
                x509_parser::objects::oid2abbrev(oid, registry).map_or_else(|_| oid.to_id_string(), ToOwned::to_owned);
            let value = match attribute.as_str() {
                Ok(text) => escape_value(text),
                Err(_) => hex_value(attribute.attr_value()),
            };
            attributes.push(format!("{key}={value}"));
        }
        rdns.push(attributes.join("+"));
    }

    rdns.reverse();
    rdns.join(",")
}

/// Escapes an attribute value (RFC 4514 section 2.4).
fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);

    for (index, character) in value.chars().enumerate() {
        let needs_escape = matches!(character, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (index == 0 && matches!(character, ' ' | '#'))
            || (index == last && character == ' ');
        if character == '\0' {
            escaped.push_str("\\00");
        } else {
            if needs_escape {
                escaped.push('\\');
            }
            escaped.push(character);
        }
    }
    escaped
}

fn hex_value(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    use x509_parser::der_parser::asn1_rs::ToDer;

    let der = value.to_der_vec().unwrap_or_default();
    let mut hex = String::from("#");
    for byte in der {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_special_characters() {
        assert_eq!(escape_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_value(" lead"), "\\ lead");
        assert_eq!(escape_value("#lead"), "\\#lead");
        assert_eq!(escape_value("trail "), "trail\\ ");
        assert_eq!(escape_value("mid#dle"), "mid#dle");
    }

    #[test]
    fn name_printed_last_rdn_first() {
        let mut params = rcgen::CertificateParams::new(vec!["mx.test".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params.distinguished_name.push(rcgen::DnType::CommonName, "mx.test");
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();

        let (_, parsed) = x509_parser::parse_x509_certificate(certificate.der()).unwrap();
        assert_eq!(rfc4514(parsed.subject()), "CN=mx.test,O=Example\\, Inc.");
    }

    #[test]
    fn invalid_extra_root_named() {
        let policy =
            TlsPolicy { verify: true, extra_roots: vec![CertificateDer::from(vec![1, 2, 3])], server_name: None };
        let error = client_config(&policy).unwrap_err();
        assert!(error.contains("extra CA certificate 1 is invalid"), "{error}");
    }
}
