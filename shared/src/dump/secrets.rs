//! `secrets`: `RESOURCE NAME  TYPE  STATUS  VALID CERT  SERIAL NUMBER  NOT AFTER  NOT BEFORE`
//! (+ `TRUST DOMAIN` when every row has one), cell for cell as `istioctl proxy-config secret`
//! prints it. Private key material never leaves this module: [`redact`] blanks it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::proto_json::{DataSource, decode, filter_config, lenient_string};
use crate::render::{Cell, Tabular, Tone};

/// `SecretsConfigDump`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretsDump {
    /// Secrets in use.
    #[serde(default, alias = "dynamicActiveSecrets")]
    pub dynamic_active_secrets: Vec<DynamicSecret>,
    /// Secrets waiting for their first SDS answer.
    #[serde(default, alias = "dynamicWarmingSecrets")]
    pub dynamic_warming_secrets: Vec<DynamicSecret>,
}

/// A dynamic secret entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DynamicSecret {
    /// Resource name (`default`, `ROOTCA`, `kubernetes://...`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    /// The `Secret` (an `Any`).
    #[serde(default)]
    pub secret: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Secret {
    #[serde(default, alias = "tlsCertificate")]
    tls_certificate: Option<TlsCertificate>,
    #[serde(default, alias = "validationContext")]
    validation_context: Option<ValidationContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TlsCertificate {
    #[serde(default, alias = "certificateChain")]
    certificate_chain: Option<DataSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ValidationContext {
    #[serde(default, alias = "trustedCa")]
    trusted_ca: Option<DataSource>,
    #[serde(default, alias = "customValidatorConfig")]
    custom_validator_config: Option<TypedExtension>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TypedExtension {
    #[serde(default, alias = "typedConfig")]
    typed_config: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SpiffeConfig {
    #[serde(default, alias = "trustDomains")]
    trust_domains: Vec<SpiffeTrustDomain>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SpiffeTrustDomain {
    #[serde(default, deserialize_with = "lenient_string")]
    name: String,
    #[serde(default, alias = "trustBundle")]
    trust_bundle: Option<DataSource>,
}

/// What the first certificate of a PEM bundle says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// `CA` or `Cert Chain`.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// Lowercase hex, zero-padded to 32 digits.
    pub serial_number: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Seconds since the epoch.
    #[serde(skip)]
    not_before_unix: i64,
    /// Seconds since the epoch.
    #[serde(skip)]
    not_after_unix: i64,
    /// From a `spiffe://` URI SAN (shown as the row's `trustDomain`).
    #[serde(skip)]
    pub trust_domain: Option<String>,
}

impl CertInfo {
    /// Parse the first PEM block of `pem` as an X.509 certificate.
    pub fn parse(pem: &[u8]) -> Option<Self> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
        let cert = block.parse_x509().ok()?;
        let validity = cert.validity();
        let (nb, na) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let trust_domain = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => u
                        .strip_prefix("spiffe://")
                        .map(|rest| rest.split('/').next().unwrap_or(rest).to_string()),
                    _ => None,
                })
            });
        Some(Self {
            cert_type: if cert.is_ca() { "CA" } else { "Cert Chain" }.into(),
            serial_number: serial_hex(cert.raw_serial()),
            not_before: rfc3339(nb),
            not_after: rfc3339(na),
            not_before_unix: nb,
            not_after_unix: na,
            trust_domain,
        })
    }

    /// `now` strictly between NotBefore and NotAfter.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before_unix < now && now < self.not_after_unix
    }
}

/// Go's `fmt.Sprintf("%032x", serial)`.
fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    format!("{trimmed:0>32}")
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One row of the secrets table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRow {
    /// Resource name.
    pub resource_name: String,
    /// `ACTIVE` or `WARMING`.
    pub status: String,
    /// Whether now is within the certificate's validity.
    pub valid_cert: bool,
    /// The certificate, when there is one.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertInfo>,
    /// The trust domain of a SPIFFE bundle, or of the certificate's SPIFFE ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// The secret as Envoy reported it, private key material redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Value>,
}

impl SecretRow {
    fn cells(&self, trust_domain: bool) -> Vec<Cell<'_>> {
        let c = self.cert.clone().unwrap_or_default();
        let mut r = vec![
            Cell::plain(&self.resource_name),
            Cell::plain(c.cert_type),
            Cell::plain(&self.status),
            Cell::toned(
                self.valid_cert.to_string(),
                if self.valid_cert || self.cert.is_none() {
                    Tone::Plain
                } else {
                    Tone::Bad
                },
            ),
            Cell::plain(c.serial_number),
            Cell::plain(c.not_after),
            Cell::plain(c.not_before),
        ];
        if trust_domain {
            r.push(Cell::plain(self.trust_domain.clone().unwrap_or_default()));
        }
        r
    }
}

const SECRET_HEADERS: [&str; 7] = [
    "RESOURCE NAME",
    "TYPE",
    "STATUS",
    "VALID CERT",
    "SERIAL NUMBER",
    "NOT AFTER",
    "NOT BEFORE",
];

impl Tabular for SecretRow {
    const KIND: &'static str = "Secret";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = SECRET_HEADERS.to_vec();
        if wide {
            h.push("TRUST DOMAIN");
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        self.cells(wide)
    }
}

/// A secrets row drawn with the `TRUST DOMAIN` column (used when every row has a trust domain,
/// as with SPIFFE federation bundles).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SpiffeSecretRow(pub SecretRow);

impl Tabular for SpiffeSecretRow {
    const KIND: &'static str = "Secret";
    fn headers(_wide: bool) -> Vec<&'static str> {
        let mut h = SECRET_HEADERS.to_vec();
        h.push("TRUST DOMAIN");
        h
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        self.0.cells(true)
    }
}

/// All rows: warming secrets (`WARMING`), then active ones (`ACTIVE`), in dump order; a SPIFFE
/// validator gives one row per trust bundle. `now` is seconds since the epoch.
pub fn secret_rows(dump: &SecretsDump, now: i64) -> Vec<SecretRow> {
    let mut rows = Vec::new();
    let entries = dump
        .dynamic_warming_secrets
        .iter()
        .map(|s| (s, "WARMING"))
        .chain(dump.dynamic_active_secrets.iter().map(|s| (s, "ACTIVE")));
    for (entry, status) in entries {
        let mut redacted = entry.secret.clone();
        if let Some(v) = redacted.as_mut() {
            redact(v);
        }
        let secret: Secret = entry.secret.as_ref().and_then(decode).unwrap_or_default();
        let row = |cert: Option<CertInfo>, trust_domain: Option<String>| SecretRow {
            resource_name: entry.name.clone(),
            status: status.into(),
            valid_cert: cert.as_ref().is_some_and(|c| c.valid_at(now)),
            trust_domain: trust_domain
                .or_else(|| cert.as_ref().and_then(|c| c.trust_domain.clone())),
            cert,
            secret: redacted.clone(),
        };
        let chain = secret
            .tls_certificate
            .as_ref()
            .and_then(|t| t.certificate_chain.as_ref())
            .and_then(DataSource::inline)
            .filter(|b| !b.is_empty());
        let ca = secret
            .validation_context
            .as_ref()
            .and_then(|v| v.trusted_ca.as_ref())
            .and_then(DataSource::inline)
            .filter(|b| !b.is_empty());
        let spiffe: SpiffeConfig = secret
            .validation_context
            .as_ref()
            .and_then(|v| v.custom_validator_config.as_ref())
            .and_then(|c| filter_config(c.typed_config.as_ref(), None))
            .and_then(decode)
            .unwrap_or_default();
        if let Some(pem) = chain.or(ca) {
            rows.push(row(CertInfo::parse(&pem), None));
        } else if !spiffe.trust_domains.is_empty() {
            for td in &spiffe.trust_domains {
                let cert = td
                    .trust_bundle
                    .as_ref()
                    .and_then(DataSource::inline)
                    .and_then(|pem| CertInfo::parse(&pem));
                rows.push(row(cert, Some(td.name.clone())));
            }
        } else {
            rows.push(row(None, None));
        }
    }
    rows
}

const REDACTED: &str = "[redacted]";

/// Blank the inline bytes of private keys, passwords and other secret data sources anywhere in
/// `v` (Envoy redacts them already; a saved or hand-edited file may not have).
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let sensitive = matches!(
                    k.as_str(),
                    "private_key" | "privateKey" | "password" | "secret" | "keys"
                );
                if sensitive {
                    redact_data_sources(child);
                }
                redact(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn redact_data_sources(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in [
                "inline_bytes",
                "inlineBytes",
                "inline_string",
                "inlineString",
            ] {
                if let Some(x) = map.get_mut(key) {
                    *x = Value::String(REDACTED.into());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_data_sources),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_684_200_772), "2023-05-16T01:32:52Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn serials_are_zero_padded_hex() {
        assert_eq!(
            serial_hex(&[0x00, 0x9a]),
            "0000000000000000000000000000009a"
        );
        assert_eq!(serial_hex(&[0xab; 20]).len(), 40);
        assert_eq!(serial_hex(&[]), "00000000000000000000000000000000");
    }

    #[test]
    fn private_keys_are_redacted() {
        let mut v = serde_json::json!({
            "name": "default",
            "tls_certificate": {
                "certificate_chain": {"inline_bytes": "Y2VydA=="},
                "private_key": {"inline_bytes": "LS0tLS1CRUdJTiBQUklWQVRF"},
                "password": {"inline_string": "hunter2"}
            },
            "session_ticket_keys": {"keys": [{"inline_bytes": "a2V5"}]}
        });
        redact(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("LS0tLS1CRUdJTiBQUklWQVRF")
                && !s.contains("hunter2")
                && !s.contains("a2V5"),
            "{s}"
        );
        assert_eq!(
            v["tls_certificate"]["certificate_chain"]["inline_bytes"],
            "Y2VydA=="
        );
        assert_eq!(
            v["tls_certificate"]["private_key"]["inline_bytes"],
            REDACTED
        );
    }

    #[test]
    fn secret_without_cert_is_not_valid() {
        let dump: SecretsDump = serde_json::from_value(serde_json::json!({
            "dynamic_warming_secrets": [{"name": "w", "secret": {"@type": "t", "name": "w"}}],
            "dynamic_active_secrets": [{"name": "bad", "secret": {"tls_certificate": {"certificate_chain": {"inline_string": "not a pem"}}}}]
        }))
        .unwrap();
        let rows = secret_rows(&dump, 0);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.row(false)
                    .into_iter()
                    .map(|c| c.text.into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells,
            vec![
                vec!["w", "", "WARMING", "false", "", "", ""],
                vec!["bad", "", "ACTIVE", "false", "", "", ""],
            ]
        );
    }

    use crate::dump::fixture;

    /// 2026-01-01T00:00:00Z: `default` (2023) has expired, ROOTCA (2033/2034) is valid, as in the
    /// goldens.
    const NOW: i64 = 1_767_225_600;

    fn rows_of(rel: &str) -> Vec<SecretRow> {
        secret_rows(fixture::dump(rel).secrets().unwrap(), NOW)
    }

    #[test]
    fn istio_golden() {
        fixture::assert_table(
            &rows_of("current/pc-secret/istio/config_dump.json"),
            &fixture::istio_text("current/pc-secret/istio/output.txt"),
        );
    }

    #[test]
    fn spire_golden_has_trust_domains() {
        let rows: Vec<SpiffeSecretRow> = rows_of("current/pc-secret/spire/config_dump.json")
            .into_iter()
            .map(SpiffeSecretRow)
            .collect();
        fixture::assert_table(
            &rows,
            &fixture::istio_text("current/pc-secret/spire/output.txt"),
        );
    }

    #[test]
    fn json_rows_carry_no_private_key() {
        let rows = rows_of("current/pc-secret/istio/config_dump.json");
        let json = serde_json::to_string(&rows).unwrap();
        assert!(
            !json.contains("W3JlZGFjdGVkXQ=="),
            "Envoy's marker is replaced too"
        );
        assert!(
            json.contains(r#""private_key":{"inline_bytes":"[redacted]"}"#),
            "{json}"
        );
        assert!(json.contains(r#""serialNumber":"0193a543fe2b0d9cd4847675394dfc54""#));
    }

    #[test]
    fn istio_1_4_dumps_have_no_secrets() {
        for dump in [
            "legacy-istio1.3-1.4-real-dumps/productpage-v1-c7765c886-v99jb.ORIGINAL-v2alpha.json",
            "legacy-istio1.3-1.4-real-dumps/istio-ingressgateway-5bf6c9887-vvvmj.json",
        ] {
            assert!(rows_of(dump).is_empty());
        }
    }
}
