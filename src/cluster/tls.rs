//! Mutual TLS for the cluster transport: rustls configurations built from the PEM files of
//! `[cluster] ca_cert`, `cert`, `key`, and the check that binds a peer's certificate to the
//! node id it claims.
//!
//! Invariants:
//! * both directions authenticate: the server requires a client certificate that chains to the
//!   cluster CA ([`WebPkiClientVerifier`]), the client requires the same of the server. A peer
//!   with no certificate or one from another CA never completes a connection;
//! * the chain check does not look at names (a node dials addresses and learns who answered
//!   from the `Hello`); identity is bound afterwards: a peer's certificate must name (SAN) the
//!   node id its `Hello` claims ([`cert_names_node`]), so a node holding a valid certificate
//!   for `node-2` cannot speak as `node-1`;
//! * every configuration carries the ring provider explicitly (`builder_with_provider`), so
//!   it works whatever process-level default is (or is not) installed, and TLS 1.3 only, which
//!   QUIC requires.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The ALPN protocol id of the cluster transport (not versioned: versions are negotiated in
/// the `Hello`, so a mismatch is refused with a clear reason rather than a TLS alert).
pub const ALPN: &[u8] = b"presenced-cluster";
/// The TLS server name a node sends when dialing. Not checked (see the module doc): the
/// dialer does not know yet which node answers at an address.
pub(crate) const DIAL_NAME: &str = "presenced-cluster";

/// Why the TLS material could not be loaded or a configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file has no usable item of the expected kind, or is malformed.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the certificates or key (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The loaded PEM material of one node: the CA it trusts, its certificate chain and key.
#[derive(Debug)]
pub struct TlsMaterial {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsMaterial {
    /// Loads `ca_cert`, `cert` and `key` (PEM; relative paths are relative to the working
    /// directory).
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
        let roots = Arc::new(load_roots(ca_cert)?);
        let (chain, key) = load_identity(cert, key)?;
        Ok(TlsMaterial { roots, chain, key })
    }

    /// The certificate chain and key (tests build raw clients from them).
    #[cfg(test)]
    pub(crate) fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.clone(), self.key.clone_key())
    }

    /// The QUIC server configuration: requires a client certificate signed by the CA.
    pub(crate) fn server_crypto(&self) -> Result<Arc<QuicServerConfig>, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(cfg).map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(quic))
    }

    /// The QUIC client configuration: presents this node's certificate and requires the
    /// server's to chain to the CA.
    pub(crate) fn client_crypto(&self) -> Result<Arc<QuicClientConfig>, TlsError> {
        self.client_crypto_with(Some((self.chain.clone(), self.key.clone_key())))
    }

    /// A client configuration with or without a client certificate (tests use `None` to
    /// play a node that presents none).
    pub(crate) fn client_crypto_with(
        &self,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Arc<QuicClientConfig>, TlsError> {
        let provider = provider();
        let verifier = Arc::new(CaOnlyServerVerifier {
            roots: self.roots.clone(),
            algs: provider.signature_verification_algorithms,
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut cfg = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(config_error)?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicClientConfig::try_from(cfg).map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(quic))
    }
}

/// Installs rustls's ring provider as the process default, once. Our own configurations do
/// not need it (they name the provider), but any other rustls user in the process would
/// panic without exactly one default; call this at the start of `main`. Idempotent.
pub fn install_crypto_provider() {
    // Err means a default is installed already (ours or another crate's): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `id` can be a node certificate's DNS name: ASCII letters, digits, `-` and `.`,
/// labels not starting or ending with `-`, not an IP address.
pub fn is_valid_node_name(id: &str) -> bool {
    let charset_ok = !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    charset_ok && matches!(ServerName::try_from(id), Ok(ServerName::DnsName(_)))
}

/// Whether `cert` (already verified against the CA by the TLS handshake) names node `id` in
/// its subject alternative names.
pub(crate) fn cert_names_node(cert: &CertificateDer<'_>, id: &str) -> bool {
    let Ok(name) = ServerName::try_from(id) else {
        return false;
    };
    match ParsedCertificate::try_from(cert) {
        Ok(parsed) => rustls::client::verify_server_name(&parsed, &name).is_ok(),
        Err(_) => false,
    }
}

/// Checks that `cert` chains to `roots` for both client and server use and names node `id`:
/// what a peer checks of it. The error is the verifier's reason.
pub(crate) fn verify_node_cert(
    roots: &RootCertStore,
    cert: &CertificateDer<'_>,
    id: &str,
) -> Result<(), String> {
    let provider = provider();
    let now = UnixTime::now();
    let parsed = ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &[],
        now,
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| e.to_string())?;
    let client = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider)
        .build()
        .map_err(|e| e.to_string())?;
    client
        .verify_client_cert(cert, &[], now)
        .map_err(|e| e.to_string())?;
    if !cert_names_node(cert, id) {
        return Err(format!("the certificate does not name {id:?}"));
    }
    Ok(())
}

/// Reads the CA file into a root store (every certificate in it is trusted).
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| pem_error(path, e))?;
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    if roots.is_empty() {
        return Err(pem_error(path, rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(roots)
}

/// Reads a certificate chain file and its private key file.
pub(crate) fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(pem_error(cert, rustls::pki_types::pem::Error::NoItemsFound));
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_error(key, e))?;
    Ok((chain, key_der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    let what = match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("malformed PEM: {other:?}"),
    };
    TlsError::Pem {
        path: path.to_path_buf(),
        what,
    }
}

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Verifies a server certificate's chain to the cluster CA, ignoring the dialed name (see the
/// module doc: the name is bound to the `Hello` afterwards).
#[derive(Debug)]
struct CaOnlyServerVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaOnlyServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::certs;

    #[test]
    fn node_names() {
        for ok in ["node-1", "a", "n1.cluster.example", "NODE-2"] {
            assert!(is_valid_node_name(ok), "{ok}");
        }
        for bad in [
            "",
            "node 1",
            "-x",
            "x-",
            "a..b",
            "127.0.0.1",
            "a_b",
            "*.x",
            "né",
        ] {
            assert!(!is_valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn load_builds_both_configs_and_binds_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::create_ca(dir.path()).unwrap();
        let n = certs::create_node(dir.path(), "node-7").unwrap();
        let m = TlsMaterial::load(&ca.cert, &n.cert, &n.key).unwrap();
        assert!(m.server_crypto().is_ok());
        assert!(m.client_crypto().is_ok());
        assert!(cert_names_node(&m.chain[0], "node-7"));
        assert!(!cert_names_node(&m.chain[0], "node-8"));
        assert!(!cert_names_node(
            &CertificateDer::from(vec![1, 2, 3]),
            "node-7"
        ));
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::create_ca(dir.path()).unwrap();
        let n = certs::create_node(dir.path(), "node-1").unwrap();
        let missing = dir.path().join("nope.crt");
        let e = TlsMaterial::load(&missing, &n.cert, &n.key).unwrap_err();
        assert!(
            matches!(e, TlsError::Io { ref path, .. } if *path == missing),
            "{e}"
        );
        // A key file where a certificate is expected: no certificate in it.
        let e = TlsMaterial::load(&ca.cert, &n.key, &n.key).unwrap_err();
        assert!(e.to_string().contains("node-1.key"), "{e}");
        assert!(e.to_string().contains("no PEM item"), "{e}");
        // The key of another node: rustls refuses the pair.
        let other = certs::create_node(dir.path(), "node-2").unwrap();
        let m = TlsMaterial::load(&ca.cert, &n.cert, &other.key).unwrap();
        assert!(matches!(m.server_crypto(), Err(TlsError::Config(_))));
    }
}
