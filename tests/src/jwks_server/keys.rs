//! Signing keys of the JWKS server: ES256 (P-256) keys generated at start and on rotation, and
//! JWT minting. ES256 because ring cannot generate RSA keys; the kid story is the same.

use anyhow::Context;
use base64::Engine as _;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, SigningKey};

pub(crate) struct SigningKeyPair {
    pub kid: String,
    key: KeyPair,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKeyPair {
    pub fn generate(kid: String) -> anyhow::Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating ES256 key")?;
        Ok(SigningKeyPair { kid, key })
    }

    /// The public JWK.
    pub fn jwk(&self) -> serde_json::Value {
        // 0x04 || X || Y
        let raw = self.key.public_key_raw();
        let (x, y) = raw[1..].split_at(32);
        serde_json::json!({
            "kid": self.kid,
            "kty": "EC",
            "alg": "ES256",
            "use": "sig",
            "crv": "P-256",
            "x": b64(x),
            "y": b64(y),
        })
    }

    /// A compact JWS over `claims`.
    pub fn mint(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let der = self.key.sign(input.as_bytes()).context("signing")?;
        let sig = der_to_fixed(&der).context("ECDSA signature is not DER")?;
        Ok(format!("{input}.{}", b64(&sig)))
    }
}

/// ECDSA `SEQUENCE { INTEGER r, INTEGER s }` → `r || s`, 32 bytes each (JWS form).
fn der_to_fixed(der: &[u8]) -> Option<Vec<u8>> {
    fn int(b: &[u8]) -> Option<(&[u8], &[u8])> {
        if *b.first()? != 0x02 {
            return None;
        }
        let len = *b.get(1)? as usize;
        let v = b.get(2..2 + len)?;
        Some((v, &b[2 + len..]))
    }
    if *der.first()? != 0x30 {
        return None;
    }
    let body = if der.get(1)? & 0x80 != 0 {
        der.get(3..)?
    } else {
        der.get(2..)?
    };
    let (r, rest) = int(body)?;
    let (s, _) = int(rest)?;
    let mut out = Vec::with_capacity(64);
    for v in [r, s] {
        let v = &v[v.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - v.len()));
        out.extend_from_slice(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signatures_become_fixed_width() {
        // r with a leading 0x00 (33 bytes), s short (31 bytes).
        let mut der = vec![0x30, 0x44, 0x02, 0x21, 0x00];
        der.extend([0xAA; 32]);
        der.extend([0x02, 0x1F]);
        der.extend([0xBB; 31]);
        let f = der_to_fixed(&der).unwrap();
        assert_eq!(f.len(), 64);
        assert_eq!(&f[..32], &[0xAA; 32]);
        assert_eq!(f[32], 0);
        assert_eq!(&f[33..], &[0xBB; 31]);
        assert!(der_to_fixed(&[0x31]).is_none());
    }

    #[test]
    fn minted_tokens_carry_the_kid() {
        let k = SigningKeyPair::generate("k1".into()).unwrap();
        let t = k.mint(&serde_json::json!({"sub": "u"})).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap();
        assert!(String::from_utf8(header).unwrap().contains(r#""kid":"k1""#));
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        assert_eq!(sig.len(), 64);
        assert_eq!(k.jwk()["crv"], "P-256");
    }
}
