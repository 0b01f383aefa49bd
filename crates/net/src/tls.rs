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
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
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

/// Builds the server and client TLS configs for `identity`, speaking the ALPNs in
/// `alpns` (a server accepts any of them; a client offers them in order).
///
/// # Errors
/// [`NetError::Tls`] if the certificate or a config cannot be built (should not happen
/// for a valid Ed25519 key).
pub(crate) fn configs(identity: &Identity, alpns: &[&[u8]]) -> Result<TlsConfigs, NetError> {
    let pkcs8 = identity.to_pkcs8_der();
    let cert = self_signed_certificate(&pkcs8).map_err(|e| tls_error("certificate", &e))?;
    let provider = Arc::new(provider());
    let key = CertifiedKey::from_der(
        vec![cert],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)),
        &provider,
    )
    .map_err(|e| tls_error("hostkey", &e))?;
    configs_for(Arc::new(key), provider, alpns)
}

/// ring's TLS 1.3 suites with AES-128-GCM/SHA-256 first, so that two voidmesh nodes
/// agree on it: the key schedule (about 100 HKDF expansions per QUIC handshake) then runs
/// on SHA-256 instead of SHA-384 (measured: about 4 % less CPU per handshake;
/// docs/benchmarks.md, "QUIC handshakes").
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// A [`NetError::Tls`] saying what could not be built.
fn tls_error(what: &str, e: &dyn std::fmt::Display) -> NetError {
    NetError::Tls(format!("{what}: {e}"))
}

/// Builds both configs around one certificate and key (see [`configs`]).
fn configs_for(
    key: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
    alpns: &[&[u8]],
) -> Result<TlsConfigs, NetError> {
    let verifier = Arc::new(PeerVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let resolver = Arc::new(SingleCertAndKey::from(key));

    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("server config", &e))?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(resolver.clone());
    server.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    // No resumption: every connection proves the client's key afresh, and no tickets
    // are sent that nobody would use.
    server.send_tls13_tickets = 0;
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.max_early_data_size = 0;

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("client config", &e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(resolver);
    client.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
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

/// The Ed25519 public key proved by the peer of an established connection: the last 32
/// bytes of the SPKI of the certificate the verifiers accepted.
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<voidmesh_proto::PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let spki = ed25519_spki(certs.first()?).ok()?;
    let key: [u8; 32] = spki.get(spki.len().checked_sub(32)?..)?.try_into().ok()?;
    Some(voidmesh_proto::PublicKey(key))
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

#[cfg(test)]
mod tests {
    //! Peers that try to claim an id they do not own, or use another key type.

    use super::*;
    use crate::{Endpoint, EndpointConfig};
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    use std::net::SocketAddr;
    use std::time::Duration;

    const ALPN: &[u8] = b"voidmesh-test";

    fn config() -> EndpointConfig {
        EndpointConfig {
            alpn: ALPN.to_vec(),
            request_timeout: Duration::from_secs(2),
            max_message_size: 1024,
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// The certificate `victim` presents, paired with `attacker`'s secret key.
    fn stolen_certificate(victim: &Identity, attacker: &Identity) -> Arc<CertifiedKey> {
        let cert = self_signed_certificate(&victim.to_pkcs8_der()).unwrap();
        let key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                attacker.to_pkcs8_der(),
            )))
            .unwrap();
        Arc::new(CertifiedKey::new(vec![cert], key))
    }

    /// A P-256 self-signed certificate and its key.
    fn p256_certificate() -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider()).unwrap())
    }

    /// A bare quinn endpoint using `key` for both roles.
    fn raw_endpoint(key: Arc<CertifiedKey>) -> quinn::Endpoint {
        let tls = configs_for(key, provider(), &[ALPN]).unwrap();
        let server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(tls.server).unwrap(),
        ));
        let mut ep = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls.client).unwrap(),
        )));
        ep
    }

    /// Dials `to` from `ep` and returns whether a connection came up.
    async fn dial(ep: &quinn::Endpoint, to: SocketAddr) -> Result<quinn::Connection, String> {
        match ep.connect(to, SERVER_NAME).unwrap().await {
            Ok(conn) => {
                // The server may still reject our certificate after our side is done.
                match tokio::time::timeout(Duration::from_millis(500), conn.closed()).await {
                    Ok(reason) => Err(reason.to_string()),
                    Err(_) => Ok(conn),
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn an_honest_raw_peer_is_accepted_and_its_id_proved() {
        let (server, _rx) = Endpoint::bind(
            &Identity::generate(),
            "127.0.0.1:0".parse().unwrap(),
            config(),
        )
        .unwrap();
        let me = Identity::generate();
        let cert = self_signed_certificate(&me.to_pkcs8_der()).unwrap();
        let key = CertifiedKey::from_der(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(me.to_pkcs8_der())),
            &provider(),
        )
        .unwrap();
        let ep = raw_endpoint(Arc::new(key));
        let conn = dial(&ep, server.local_addr()).await.unwrap();
        assert_eq!(peer_node_id(&conn), Some(server.node_id()));
    }

    #[tokio::test]
    async fn a_client_presenting_a_stolen_certificate_is_rejected() {
        let victim = Identity::generate();
        let (server, mut rx) = Endpoint::bind(
            &Identity::generate(),
            "127.0.0.1:0".parse().unwrap(),
            config(),
        )
        .unwrap();
        let attacker = raw_endpoint(stolen_certificate(&victim, &Identity::generate()));
        assert!(dial(&attacker, server.local_addr()).await.is_err());
        assert!(rx.try_recv().is_err());
        assert!(server.handle_is_empty_for_tests());
    }

    #[tokio::test]
    async fn a_server_presenting_a_stolen_certificate_is_rejected() {
        let victim = Identity::generate();
        let attacker = raw_endpoint(stolen_certificate(&victim, &Identity::generate()));
        let addr = attacker.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            while let Some(incoming) = attacker.accept().await {
                let _ = incoming.await;
            }
        });
        let (client, _rx) = Endpoint::bind(
            &Identity::generate(),
            "127.0.0.1:0".parse().unwrap(),
            config(),
        )
        .unwrap();
        let message = bytes::Bytes::from_static(&[0, 0, 0, 6, 2, 148]);
        for expect in [Some(victim.node_id()), None] {
            let err = client
                .request(addr, expect, message.clone())
                .await
                .unwrap_err();
            assert!(matches!(err, NetError::Handshake { .. }), "{err:?}");
        }
        accept.abort();
    }

    #[tokio::test]
    async fn a_peer_with_a_non_ed25519_key_is_rejected_both_ways() {
        let (server, mut rx) = Endpoint::bind(
            &Identity::generate(),
            "127.0.0.1:0".parse().unwrap(),
            config(),
        )
        .unwrap();
        let p256 = raw_endpoint(p256_certificate());
        assert!(dial(&p256, server.local_addr()).await.is_err());
        assert!(rx.try_recv().is_err());

        let addr = p256.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = p256.accept().await {
                let _ = incoming.await;
            }
        });
        let message = bytes::Bytes::from_static(&[0, 0, 0, 6, 2, 148]);
        let err = server.request(addr, None, message).await.unwrap_err();
        assert!(matches!(err, NetError::Handshake { .. }), "{err:?}");
    }
}
