//! The simulator's STARTTLS identity: a self-signed certificate for its
//! hostname, made at start, served by rustls with the ring provider.

use std::io;
use std::sync::Arc;

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor with a fresh self-signed certificate for `hostname`.
/// Clients must not verify it, as MTAs doing opportunistic STARTTLS do not.
pub(crate) fn acceptor(hostname: &str) -> io::Result<TlsAcceptor> {
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_string()]).map_err(|error| {
        io::Error::other(format!("failed to make a self-signed certificate for {hostname}: {error}"))
    })?;
    let certificate = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(vec![certificate], key))
        .map_err(|error| io::Error::other(format!("failed to configure TLS: {error}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
