//! The private PKI of the JWKS server: a CA "Olaf Private Root CA" and the certificates the
//! server can present (valid, wrong host name, expired), like Keycloak behind a cluster router.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The CA's common name.
pub const CA_NAME: &str = "Olaf Private Root CA";

/// The names of the valid server certificate.
pub const SERVER_NAMES: &[&str] = &["*.apps.example.com", "localhost", "127.0.0.1"];

pub(crate) struct Pki {
    pub ca_pem: String,
    pub valid: Arc<CertifiedKey>,
    pub wrong_host: Arc<CertifiedKey>,
    pub expired: Arc<CertifiedKey>,
}

pub(crate) fn generate() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Olaf");
    ca_params.distinguished_name = dn;
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let ca_pem = ca_cert.pem();
    let ca_der = CertificateDer::from(ca_cert.der().to_vec());
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: &[&str], cn: &str, expired: bool| -> anyhow::Result<Arc<CertifiedKey>> {
        let key = KeyPair::generate().context("generating server key")?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing server cert")?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&der)
            .context("server key for rustls")?;
        // Leaf + CA, as `openssl s_client -showcerts` shows behind an OpenShift router.
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), ca_der.clone()],
            signer,
        )))
    };
    Ok(Pki {
        valid: leaf(SERVER_NAMES, "*.apps.example.com", false)?,
        wrong_host: leaf(&["sso.other.example.org"], "sso.other.example.org", false)?,
        expired: leaf(SERVER_NAMES, "*.apps.example.com", true)?,
        ca_pem,
    })
}
