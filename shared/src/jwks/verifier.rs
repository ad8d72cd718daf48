//! The certificate verifier of our fetches: it records the chain the server presented and the
//! verdict of the real `WebPkiServerVerifier`, and returns that verdict unchanged — so an
//! untrusted chain can be named (and offered to add-ca) without ever skipping verification.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::Error;
use super::fetch::Trust;

/// What one TLS handshake presented, and the real verifier's verdict.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    /// Leaf first, then what the server sent after it.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// Why verification failed, if it did.
    pub(crate) error: Option<rustls::Error>,
}

/// A `ServerCertVerifier` that records the presented chain and the real verifier's verdict, and
/// returns that verdict unchanged.
#[derive(Debug)]
pub struct Recorder {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Handshake>>,
}

impl Recorder {
    pub(crate) fn new(trust: &Trust, provider: Arc<CryptoProvider>) -> Result<Self, Error> {
        let store = trust.root_store();
        // An empty store cannot build a WebPki verifier: nothing is trusted then.
        let inner = if store.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| Error::Tls {
                        what: "the certificate verifier".into(),
                        source: rustls::Error::General(e.to_string()),
                    })?,
            )
        };
        Ok(Recorder {
            inner,
            provider,
            seen: Mutex::new(None),
        })
    }

    /// The last handshake seen (and forget it).
    pub(crate) fn take(&self) -> Handshake {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Handshake {
            chain,
            error: verdict.as_ref().err().cloned(),
        });
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(v) => v.verify_tls12_signature(message, cert, dss),
            None => rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(v) => v.verify_tls13_signature(message, cert, dss),
            None => rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.inner {
            Some(v) => v.supported_verify_schemes(),
            None => self
                .provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}
