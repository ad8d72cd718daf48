//! Certificates for display and for `extra.pem` bundles: PEM in and out, subject/issuer/expiry,
//! and appending to / removing from a bundle without duplicates. No I/O.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Error;

/// What we show of a certificate (never key material: certificates are public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// Subject DN, e.g. `CN=Olaf Private Root CA`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Subject CN (else the DN).
    pub subject_cn: String,
    /// Issuer CN (else the DN).
    pub issuer_cn: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// notAfter, seconds since the epoch.
    #[serde(skip)]
    pub not_after_unix: i64,
    /// notBefore, seconds since the epoch.
    #[serde(skip)]
    pub not_before_unix: i64,
    /// `basicConstraints CA:TRUE`.
    pub is_ca: bool,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// SHA-256 of the DER, hex with colons (as `openssl x509 -fingerprint -sha256`).
    pub sha256: String,
}

impl CertInfo {
    /// Describe a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, c) = X509Certificate::from_der(der).ok()?;
        let cn = |n: &x509_parser::x509::X509Name<'_>| {
            n.iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| n.to_string())
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            names.push(std::net::Ipv4Addr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            names.push(std::net::Ipv6Addr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let subject = c.subject().to_string();
        let issuer = c.issuer().to_string();
        let nb = c.validity().not_before.timestamp();
        let na = c.validity().not_after.timestamp();
        Some(CertInfo {
            subject_cn: cn(c.subject()),
            issuer_cn: cn(c.issuer()),
            self_signed: subject == issuer,
            subject,
            issuer,
            not_before: rfc3339(nb),
            not_after: rfc3339(na),
            not_after_unix: na,
            not_before_unix: nb,
            is_ca: c.is_ca(),
            names,
            sha256: fingerprint(der),
        })
    }

    /// One line: `subject=… issuer=… notAfter=…`.
    pub fn summary(&self) -> String {
        format!(
            "subject={}  issuer={}  notAfter={}",
            self.subject, self.issuer, self.not_after
        )
    }
}

/// SHA-256 fingerprint, `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse every `CERTIFICATE` block of a PEM text (other blocks, e.g. keys, are skipped and never
/// kept). `what` names the source in errors.
pub fn parse_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        out.push(c.map_err(|source| Error::BadCertificate {
            what: what.to_string(),
            source,
        })?);
    }
    Ok(out)
}

/// Like [`parse_pem`], but an empty result is an error.
pub fn parse_pem_nonempty(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = parse_pem(pem, what)?;
    if certs.is_empty() {
        return Err(Error::NoCertificates {
            what: what.to_string(),
        });
    }
    Ok(certs)
}

/// PEM text of one certificate, with a `# subject` comment line above it (as bundles
/// conventionally have; PEM parsers skip text outside the markers).
pub fn to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut s = String::new();
    if let Some(info) = CertInfo::from_der(der) {
        s.push_str(&format!("# {}\n", info.subject));
    }
    s.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The result of changing a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleChange {
    /// The new bundle text.
    pub bundle: String,
    /// Certificates added (or removed).
    pub changed: Vec<CertInfo>,
    /// Certificates skipped (already present, or not present for a removal).
    pub skipped: Vec<CertInfo>,
}

impl BundleChange {
    /// True when the bundle text is unchanged.
    pub fn is_noop(&self) -> bool {
        self.changed.is_empty()
    }
}

fn info(der: &CertificateDer<'_>) -> CertInfo {
    CertInfo::from_der(der).unwrap_or_else(|| CertInfo {
        subject: "<unparsable certificate>".into(),
        issuer: String::new(),
        subject_cn: "<unparsable certificate>".into(),
        issuer_cn: String::new(),
        not_before: String::new(),
        not_after: String::new(),
        not_after_unix: 0,
        not_before_unix: 0,
        is_ca: false,
        self_signed: false,
        names: vec![],
        sha256: fingerprint(der),
    })
}

/// Append `certs` to an existing bundle, keeping its text as it is and skipping certificates
/// already in it (compared by DER).
pub fn append_to_bundle(
    existing: &str,
    certs: &[CertificateDer<'_>],
    what: &str,
) -> Result<BundleChange, Error> {
    let mut present: Vec<Vec<u8>> = parse_pem(existing.as_bytes(), what)?
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let mut bundle = existing.to_string();
    let mut changed = Vec::new();
    let mut skipped = Vec::new();
    for c in certs {
        if present.iter().any(|p| p.as_slice() == c.as_ref()) {
            skipped.push(info(c));
            continue;
        }
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(&to_pem(c));
        present.push(c.as_ref().to_vec());
        changed.push(info(c));
    }
    Ok(BundleChange {
        bundle,
        changed,
        skipped,
    })
}

/// Remove `certs` from a bundle (the bundle is rewritten from its remaining certificates).
pub fn remove_from_bundle(
    existing: &str,
    certs: &[CertificateDer<'_>],
    what: &str,
) -> Result<BundleChange, Error> {
    let present = parse_pem(existing.as_bytes(), what)?;
    let mut changed = Vec::new();
    let mut skipped = Vec::new();
    for c in certs {
        if present.iter().any(|p| p.as_ref() == c.as_ref()) {
            changed.push(info(c));
        } else {
            skipped.push(info(c));
        }
    }
    if changed.is_empty() {
        return Ok(BundleChange {
            bundle: existing.to_string(),
            changed,
            skipped,
        });
    }
    let bundle = present
        .iter()
        .filter(|p| !certs.iter().any(|c| c.as_ref() == p.as_ref()))
        .map(to_pem)
        .collect::<String>();
    Ok(BundleChange {
        bundle,
        changed,
        skipped,
    })
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Throw-away self-signed test CAs made with
    // `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null
    //  -subj "/CN=…" -days 3650 -addext basicConstraints=critical,CA:TRUE` (public certificates).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUeVIoPnUpYzTU9uXLNjp9DSihATowCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOVGVzdCBCdW5kbGUgQ0EwHhcNMjYxMTI0MjI0NzQwWhcNMzYx
MTIxMjI0NzQwWjAZMRcwFQYDVQQDDA5UZXN0IEJ1bmRsZSBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABDk7BhVfq3rDCu5XkEJEIw0fR1TO5aU3kpyt2e9J5p3K
xoaDhUCuaDwv6nEpnERdiAor87ZrVOMhw9mKKs21UeejUzBRMB0GA1UdDgQWBBRy
PS+y8qKkqwAsTzk/3q+VwPYzajAfBgNVHSMEGDAWgBRyPS+y8qKkqwAsTzk/3q+V
wPYzajAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCQTDFzaKhG
NUPBp52TSk8TmS0p3v2ixB3dex4eUBiRNgIhAJOIN9bnoytXkVAHSYQZwwGfDrJn
C1IBFH8Pcxv5CK0q
-----END CERTIFICATE-----
";
    const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIUD/kI1zU/N7vxw1TuPRynm8sUIQswCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPT3RoZXIgQnVuZGxlIENBMB4XDTI2MTEyNDIyNDc0MFoXDTM2
MTEyMTIyNDc0MFowGjEYMBYGA1UEAwwPT3RoZXIgQnVuZGxlIENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEUR0pw9/+pD0aiY4EJ81cc8Vv6Z5v1TPjtUy8vxmy
fvMmjAcLa9fwPhqIq88EkkihB+5yz8uPO54Z6Vw2cpJtbKNTMFEwHQYDVR0OBBYE
FIFQI4DPpVbv7AlO7vWI67mQpZEXMB8GA1UdIwQYMBaAFIFQI4DPpVbv7AlO7vWI
67mQpZEXMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgPHni5lCu
1esXh0pvr6EnWbVvm0lP1aN+RzkFY3ntacoCID/RoLcct8qCsx6EcVjmcso9yAZy
6QdfL2xXiQbS308l
-----END CERTIFICATE-----
";

    fn cert(pem: &str) -> CertificateDer<'static> {
        parse_pem(pem.as_bytes(), "test").unwrap().remove(0)
    }

    #[test]
    fn cert_info() {
        let i = CertInfo::from_der(&cert(TEST_CA)).unwrap();
        assert_eq!(i.subject, "CN=Test Bundle CA");
        assert_eq!(i.issuer_cn, "Test Bundle CA");
        assert!(i.is_ca && i.self_signed);
        assert_eq!(i.not_after, "2036-11-21T22:47:40Z");
        assert_eq!(i.sha256.len(), 32 * 3 - 1);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn pem_parsing_skips_keys_and_comments() {
        let text = format!(
            "# comment\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{TEST_CA}"
        );
        let certs = parse_pem(text.as_bytes(), "x").unwrap();
        assert_eq!(certs.len(), 1);
        assert!(matches!(
            parse_pem_nonempty(b"nothing", "f.pem"),
            Err(Error::NoCertificates { .. })
        ));
    }

    #[test]
    fn bundle_append_keeps_existing_and_skips_duplicates() {
        let c = cert(TEST_CA);
        // An unterminated block in the existing bundle is an error, not silently replaced.
        let broken = "# someone else's CA\n-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(append_to_bundle(broken, std::slice::from_ref(&c), "secret").is_err());

        // Someone else's bundle, without a final newline: kept byte for byte, ours appended.
        let existing = format!("# theirs\n{}", OTHER_CA.trim_end());
        let first = append_to_bundle(&existing, std::slice::from_ref(&c), "secret").unwrap();
        assert_eq!(first.changed.len(), 1);
        assert!(first.bundle.starts_with(&existing));
        assert!(first.bundle.contains("# CN=Test Bundle CA\n-----BEGIN"));
        assert_eq!(parse_pem(first.bundle.as_bytes(), "x").unwrap().len(), 2);
        let again = append_to_bundle(&first.bundle, &[c.clone(), cert(OTHER_CA)], "s").unwrap();
        assert!(again.is_noop());
        assert_eq!(again.skipped.len(), 2);
        assert_eq!(again.bundle, first.bundle);

        let removed = remove_from_bundle(&first.bundle, std::slice::from_ref(&c), "s").unwrap();
        assert_eq!(removed.changed.len(), 1);
        assert_eq!(
            parse_pem(removed.bundle.as_bytes(), "x").unwrap(),
            vec![cert(OTHER_CA)]
        );
        let none = remove_from_bundle(&removed.bundle, &[c], "s").unwrap();
        assert!(none.is_noop());
    }
}
