//! Label selectors (equality and set-based) and field selectors.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits at commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

pub(crate) fn parse_labels(s: &str) -> Result<Vec<Requirement>, String> {
    let mut reqs = Vec::new();
    for term in split_terms(s) {
        let bad = || format!("unable to parse requirement: invalid label selector term {term:?}");
        if let Some(open) = term.find('(') {
            let close = term.rfind(')').ok_or_else(bad)?;
            let mut head = term[..open].split_whitespace();
            let key = head.next().ok_or_else(bad)?.to_string();
            let op = head.next().ok_or_else(bad)?;
            if head.next().is_some() {
                return Err(bad());
            }
            let values: Vec<String> = term[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            reqs.push(match op {
                "in" => Requirement::In(key, values),
                "notin" => Requirement::NotIn(key, values),
                _ => return Err(bad()),
            });
        } else if let Some((k, v)) = term.split_once("!=") {
            reqs.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once("==") {
            reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once('=') {
            reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some(k) = term.strip_prefix('!') {
            reqs.push(Requirement::NotExists(k.trim().into()));
        } else if term.contains(char::is_whitespace) {
            return Err(bad());
        } else {
            reqs.push(Requirement::Exists(term.into()));
        }
    }
    Ok(reqs)
}

pub(crate) fn matches_labels(reqs: &[Requirement], obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// (path, equal?, value)
pub(crate) type FieldReq = (String, bool, String);

pub(crate) fn parse_fields(s: &str) -> Result<Vec<FieldReq>, String> {
    let mut out = Vec::new();
    for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Some((k, v)) = term.split_once("!=") {
            out.push((k.trim().into(), false, v.trim().into()));
        } else if let Some((k, v)) = term.split_once("==") {
            out.push((k.trim().into(), true, v.trim().into()));
        } else if let Some((k, v)) = term.split_once('=') {
            out.push((k.trim().into(), true, v.trim().into()));
        } else {
            return Err(format!(
                "invalid selector: '{term}'; can't understand '{term}'"
            ));
        }
    }
    Ok(out)
}

fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn matches_fields(reqs: &[FieldReq], obj: &Value) -> bool {
    reqs.iter()
        .all(|(path, eq, want)| (field_value(obj, path) == *want) == *eq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based() {
        let r = parse_labels("app in (productpage, ratings),version=v1,!legacy,tier").unwrap();
        assert_eq!(r.len(), 4);
        let pod = json!({"metadata":{"labels":{"app":"ratings","version":"v1","tier":"x"}}});
        assert!(matches_labels(&r, &pod));
        let r = parse_labels("app notin (ratings)").unwrap();
        assert!(!matches_labels(&r, &pod));
        assert!(matches_labels(&parse_labels("app!=x").unwrap(), &pod));
        assert!(matches_labels(&parse_labels("missing!=x").unwrap(), &pod));
        assert!(parse_labels("a b").is_err());
    }

    #[test]
    fn fields() {
        let pod = json!({"metadata":{"name":"p"},"status":{"phase":"Running"}});
        let f = parse_fields("metadata.name=p,status.phase!=Pending").unwrap();
        assert!(matches_fields(&f, &pod));
    }
}
