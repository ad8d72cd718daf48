//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch good enough
//! for pod templates (lists merged by their Kubernetes merge keys).

use serde_json::{Map, Value};

/// RFC 7386.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field, as the Kubernetes API types declare it.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "ports" => {
            if sample.get("containerPort").is_some() {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

fn is_directive(k: &str) -> bool {
    k == "$retainKeys"
        || k.starts_with("$setElementOrder/")
        || k.starts_with("$deleteFromPrimitiveList/")
}

/// Strategic merge patch: a merge patch, except that lists with a merge key are merged
/// element by element, and the `$patch: delete|replace` directives are honoured.
pub(crate) fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut rest = p.clone();
            rest.remove("$patch");
            *target = strip_directives(&Value::Object(rest));
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k == "$patch" || is_directive(k) {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        if let Some(pv) = v.get("$patch").and_then(Value::as_str)
            && pv == "delete"
        {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                let key = items.iter().chain(cur.iter()).find_map(|s| {
                    s.is_object()
                        .then(|| merge_key(k, s))
                        .flatten()
                        .filter(|mk| s.get(*mk).is_some())
                });
                match key {
                    Some(mk) => merge_list(cur, items, mk),
                    None => *cur = items.iter().map(strip_directives).collect(),
                }
            }
            (Some(existing), _) => strategic(existing, v),
            (None, _) => {
                t.insert(k.clone(), strip_directives(v));
            }
        }
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key).cloned();
        let pos = id
            .as_ref()
            .and_then(|id| cur.iter().position(|c| c.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                cur.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic(&mut cur[i], item),
            (None, false) => cur.push(strip_directives(item)),
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "$patch" && !is_directive(k))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| format!("missing path element {p:?}"))?,
            Value::Array(a) => {
                let i: usize = p
                    .parse()
                    .map_err(|_| format!("invalid array index {p:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of bounds"))?
            }
            _ => return Err(format!("cannot descend into {p:?}")),
        };
    }
    Ok(cur)
}

fn op_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts = pointer_parts(path)?;
    let Some((last, init)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, init)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add at {path:?}")),
    }
}

fn op_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let parts = pointer_parts(path)?;
    let Some((last, init)) = parts.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match parent_mut(doc, init)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}: missing value")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove at {path:?}")),
    }
}

fn op_get(doc: &Value, path: &str) -> Result<Value, String> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| format!("missing value at {path:?}"))
}

/// RFC 6902.
pub(crate) fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let Value::Array(ops) = ops else {
        return Err("a JSON patch must be an array of operations".into());
    };
    for op in ops {
        let kind = op["op"].as_str().ok_or("operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("operation without \"path\"")?;
        match kind {
            "add" => op_add(doc, path, op.get("value").cloned().unwrap_or(Value::Null))?,
            "remove" => {
                op_remove(doc, path)?;
            }
            "replace" => {
                op_remove(doc, path)?;
                op_add(doc, path, op.get("value").cloned().unwrap_or(Value::Null))?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move without \"from\"")?;
                let v = op_remove(doc, from)?;
                op_add(doc, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy without \"from\"")?;
                let v = op_get(doc, from)?;
                op_add(doc, path, v)?;
            }
            "test" => {
                let v = op_get(doc, path)?;
                if Some(&v) != op.get("value") {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_named_lists() {
        let mut d = json!({"spec":{"template":{"spec":{
            "containers":[{"name":"app","image":"a:1"},{"name":"istio-proxy","image":"p",
                "volumeMounts":[{"name":"x","mountPath":"/x"}]}],
            "volumes":[{"name":"x","emptyDir":{}}]}}}});
        let p = json!({"spec":{"template":{"spec":{
            "containers":[{"name":"istio-proxy","volumeMounts":[{"name":"jwks","mountPath":"/jwks"}]}],
            "volumes":[{"name":"jwks","secret":{"secretName":"s"}},{"name":"x","$patch":"delete"}],
            "$setElementOrder/containers":[{"name":"app"},{"name":"istio-proxy"}]}}}});
        strategic(&mut d, &p);
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["containers"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["image"], "a:1");
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name":"jwks","secret":{"secretName":"s"}}])
        );
        assert!(spec.get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn merge_and_json_patch() {
        let mut d = json!({"a":{"b":1,"c":2},"l":[1,2]});
        merge(&mut d, &json!({"a":{"b":null,"d":3},"l":[3]}));
        assert_eq!(d, json!({"a":{"c":2,"d":3},"l":[3]}));
        json_patch(
            &mut d,
            &json!([{"op":"add","path":"/l/-","value":4},{"op":"replace","path":"/a/c","value":5},
                    {"op":"test","path":"/a/d","value":3},{"op":"remove","path":"/a/d"}]),
        )
        .unwrap();
        assert_eq!(d, json!({"a":{"c":5},"l":[3,4]}));
        assert!(json_patch(&mut d, &json!([{"op":"test","path":"/a/c","value":1}])).is_err());
    }
}
