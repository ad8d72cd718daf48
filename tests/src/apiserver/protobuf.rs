//! Just enough of the Kubernetes protobuf encoding to read what kubectl sends as protobuf:
//! the `k8s\0` envelope (runtime.Unknown) around an authentication/v1 TokenRequest
//! (`kubectl create token`) or SelfSubjectAccessReview (`kubectl auth can-i`).

use serde_json::{Value, json};

pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// (field number, value) pairs of one message.
fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Field::Other
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let v = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Field::Bytes(v)
            }
            5 => {
                pos += 4;
                Field::Other
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    (pos == buf.len()).then_some(out)
}

fn bytes_field<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Option<&'a [u8]> {
    fs.iter().find_map(|(f, v)| match v {
        Field::Bytes(b) if *f == n => Some(*b),
        _ => None,
    })
}

/// The object inside a `k8s\0` envelope.
fn unwrap_envelope(body: &[u8]) -> Option<&[u8]> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    bytes_field(&fields(unknown)?, 2)
}

/// A protobuf TokenRequest as its JSON `{"spec": {...}}`.
pub(crate) fn token_request(body: &[u8]) -> Option<Value> {
    let tr = fields(unwrap_envelope(body)?)?;
    let spec = fields(bytes_field(&tr, 2).unwrap_or_default())?;
    let mut audiences = Vec::new();
    let mut expiration = None;
    for (f, v) in &spec {
        match (f, v) {
            (1, Field::Bytes(b)) => audiences.push(json!(String::from_utf8_lossy(b))),
            (4, Field::Varint(n)) => expiration = Some(*n),
            _ => {}
        }
    }
    let mut spec = json!({"audiences": audiences});
    if let Some(e) = expiration {
        spec["expirationSeconds"] = json!(e);
    }
    Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))
}

/// A protobuf authorization/v1 SelfSubjectAccessReview (`kubectl auth can-i`) as JSON.
pub(crate) fn self_subject_access_review(body: &[u8]) -> Option<Value> {
    let review = fields(unwrap_envelope(body)?)?;
    let spec = fields(bytes_field(&review, 2).unwrap_or_default())?;
    let mut spec_json = json!({});
    if let Some(ra) = bytes_field(&spec, 1) {
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let mut attrs = serde_json::Map::new();
        for (f, v) in fields(ra)? {
            if let (Some(name), Field::Bytes(b)) = (names.get((f as usize).wrapping_sub(1)), v) {
                attrs.insert((*name).to_string(), json!(String::from_utf8_lossy(b)));
            }
        }
        spec_json["resourceAttributes"] = Value::Object(attrs);
    }
    if let Some(nra) = bytes_field(&spec, 2) {
        let mut attrs = serde_json::Map::new();
        for (f, v) in fields(nra)? {
            if let Field::Bytes(b) = v {
                let key = if f == 1 { "path" } else { "verb" };
                attrs.insert(key.to_string(), json!(String::from_utf8_lossy(b)));
            }
        }
        spec_json["nonResourceAttributes"] = Value::Object(attrs);
    }
    Some(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": spec_json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_create_token_body() {
        // `kubectl create token bookinfo --audience a --duration 10m`, hand-encoded.
        let mut spec = vec![10, 1, b'a', 32, 0xd8, 0x04];
        let mut tr = vec![10, 0, 18, spec.len() as u8];
        tr.append(&mut spec);
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&[10, 0, 18, tr.len() as u8]);
        body.extend_from_slice(&tr);
        let v = token_request(&body).unwrap();
        assert_eq!(
            v["spec"],
            json!({"audiences": ["a"], "expirationSeconds": 600})
        );
    }
}
