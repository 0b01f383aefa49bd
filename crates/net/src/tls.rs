//! TLS for the overlay: self-signed certificates that carry the hostkey, and verifiers
//! that turn a finished handshake into a proved node id.
//!
//! # How a peer proves its id
//! Both sides present a self-signed certificate (rcgen) holding their Ed25519 hostkey;
//! the server requires a client certificate (mutual TLS). The verifiers below:
//! 1. accept exactly one certificate, parse it (webpki) and require an Ed25519
//!    SubjectPublicKeyInfo; no chain, name or validity checks, since nobody vouches for
//!    the certificate but its own key;
//! 2. check the TLS 1.3 `CertificateVerify` signature over the handshake transcript with
//!    ring's Ed25519 verification ([`rustls::crypto::verify_tls13_signature`]): this is
//!    the proof that the peer holds the secret key, bound to this very connection.
//!
//! After the handshake, [`peer_node_id`] hashes the certificate's SPKI into the node id.
//! TLS 1.2 is not offered; only the Ed25519 signature scheme is accepted.

use crate::identity::{is_ed25519_spki, node_id_from_spki, Identity};
use crate::NetError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use voidmesh_proto::NodeId;

/// Server name the client sends (SNI). Meaningless to the verifiers, which check keys,
/// not names; quinn needs a syntactically valid one.
pub(crate) const SERVER_NAME: &str = "voidmesh";

/// The TLS configurations of one endpoint, both presenting the same certificate.
pub(crate) struct TlsConfigs {
    /// Used when we accept connections.
    pub(crate) server: rustls::ServerConfig,
    /// Used when we dial.
    pub(crate) client: rustls::ClientConfig,
}

/// Builds the server and client TLS configs for `identity`, speaking only `alpn`.
///
/// # Errors
/// [`NetError::Tls`] if the certificate or a config cannot be built (should not happen
/// for a valid Ed25519 key).
pub(crate) fn configs(identity: &Identity, alpn: &[u8]) -> Result<TlsConfigs, NetError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| NetError::Tls(format!("{what}: {e}"));
    let pkcs8 = identity.to_pkcs8_der();
    let cert = self_signed_certificate(&pkcs8).map_err(|e| tls("certificate", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PeerVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.clone()));

    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls("server config", &e))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], key())
        .map_err(|e| tls("server certificate", &e))?;
    server.alpn_protocols = vec![alpn.to_vec()];
    // No resumption: every connection proves the client's key afresh, and no tickets
    // are sent that nobody would use.
    server.send_tls13_tickets = 0;
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.max_early_data_size = 0;

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls("client config", &e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key())
        .map_err(|e| tls("client certificate", &e))?;
    client.alpn_protocols = vec![alpn.to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    client.enable_early_data = false;

    Ok(TlsConfigs { server, client })
}

/// A self-signed X.509 certificate for the Ed25519 key in `pkcs8`.
fn self_signed_certificate(pkcs8: &[u8]) -> Result<CertificateDer<'static>, rcgen::Error> {
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8),
        &rcgen::PKCS_ED25519,
    )?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    Ok(params.self_signed(&key)?.der().clone())
}

/// The DER SubjectPublicKeyInfo of `cert`, if it is an Ed25519 key.
fn ed25519_spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    if !is_ed25519_spki(spki.as_ref()) {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotEd25519))),
        ));
    }
    Ok(spki.as_ref().to_vec())
}

/// The peer certificate's key is not Ed25519.
#[derive(Debug)]
struct NotEd25519;

impl std::fmt::Display for NotEd25519 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer certificate key is not Ed25519")
    }
}

impl std::error::Error for NotEd25519 {}

/// Checks a certificate presented by a peer (see the module doc).
fn check_peer_certificate(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
    }
    ed25519_spki(end_entity).map(|_| ())
}

/// Verifies the peer's certificate key and handshake signature, on both sides.
#[derive(Debug)]
struct PeerVerifier {
    /// ring's signature verification algorithms, from the crypto provider.
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    /// Checks a TLS 1.3 handshake signature made with the certificate's key.
    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// TLS 1.2 is never negotiated (the configs offer TLS 1.3 only); refuse if asked.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_peer_certificate(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_peer_certificate(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The node id proved by the peer of an established connection: SHA-256 of the SPKI of
/// the certificate the verifiers accepted.
pub(crate) fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let spki = ed25519_spki(certs.first()?).ok()?;
    Some(node_id_from_spki(&spki))
}

/// A stateless-reset key derived from the hostkey, so that a node restarted with the same
/// key can tell peers (with a valid stateless reset) that their old connections are gone,
/// instead of leaving them to time out.
pub(crate) fn reset_key(identity: &Identity) -> Arc<dyn quinn::crypto::HmacKey> {
    let mut h = Sha256::new();
    h.update(b"voidmesh stateless reset key v1");
    h.update(identity.signing_key().as_bytes());
    let secret: [u8; 32] = h.finalize().into();
    Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}
