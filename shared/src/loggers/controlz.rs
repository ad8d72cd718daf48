//! istiod's ControlZ logging scopes: `GET /scopej/` lists them, `PUT /scopej/<scope>` sets one
//! (202 Accepted). Istio's `pkg/ctrlz/topics/scopes.go` defines the JSON and the levels.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Error;
use super::plan::{Unknown, suggest};
use crate::admin::AdminClient;
use crate::render::{Cell, Tabular};

/// ControlZ's default port (`--ctrlz_port`).
pub const DEFAULT_PORT: u16 = 9876;

/// An istio scope level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn` (also accepted as `warning`)
    Warn,
    /// `error`
    Error,
    /// `none` (also accepted as `off`)
    None,
}

impl ScopeLevel {
    /// The valid names, for messages.
    pub const NAMES: &'static str = "debug, info, warn (warning), error, none (off)";

    /// The name istio uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeLevel::Debug => "debug",
            ScopeLevel::Info => "info",
            ScopeLevel::Warn => "warn",
            ScopeLevel::Error => "error",
            ScopeLevel::None => "none",
        }
    }
}

impl fmt::Display for ScopeLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScopeLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debug" => Ok(ScopeLevel::Debug),
            "info" => Ok(ScopeLevel::Info),
            "warn" | "warning" => Ok(ScopeLevel::Warn),
            "error" => Ok(ScopeLevel::Error),
            "none" | "off" => Ok(ScopeLevel::None),
            _ => Err(Error::BadScopeLevel {
                level: s.to_string(),
            }),
        }
    }
}

/// One scope as `/scopej/` shows it. Levels stay strings: a newer istiod may add one, and an
/// update sends back what it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Scope name, e.g. `ads`.
    pub name: String,
    /// What it logs.
    #[serde(default)]
    pub description: String,
    /// Output level.
    #[serde(default)]
    pub output_level: String,
    /// Level from which stack traces are added.
    #[serde(default)]
    pub stack_trace_level: String,
    /// Whether the caller is logged.
    #[serde(default)]
    pub log_callers: bool,
}

/// The body of `PUT /scopej/<scope>`. ControlZ sets every field, so the current stack-trace
/// level and `log_callers` are sent back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeUpdate {
    /// Scope name.
    pub name: String,
    /// New output level.
    pub output_level: String,
    /// Unchanged.
    pub stack_trace_level: String,
    /// Unchanged.
    pub log_callers: bool,
}

impl ScopeUpdate {
    /// Change only the output level of `current`.
    pub fn new(current: &Scope, level: ScopeLevel) -> Self {
        Self {
            name: current.name.clone(),
            output_level: level.to_string(),
            stack_trace_level: current.stack_trace_level.clone(),
            log_callers: current.log_callers,
        }
    }
}

/// Parse `GET /scopej/`; sorted by name.
pub fn parse_scopes(body: &[u8], target: &str) -> Result<Vec<Scope>, Error> {
    let mut v: Vec<Scope> = serde_json::from_slice(body).map_err(|source| Error::Scopes {
        target: target.to_string(),
        source,
    })?;
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Parse `SCOPE=LEVEL`/`SCOPE:LEVEL` specs; a scope named twice takes the last level.
pub fn parse_specs<S: AsRef<str>>(specs: &[S]) -> Result<BTreeMap<String, ScopeLevel>, Error> {
    let mut out = BTreeMap::new();
    for s in specs {
        let s = s.as_ref();
        let t = s.trim();
        let Some((name, level)) = t.rsplit_once('=').or_else(|| t.rsplit_once(':')) else {
            return Err(Error::BadScopeSpec(s.to_string()));
        };
        if name.trim().is_empty() || level.trim().is_empty() {
            return Err(Error::BadScopeSpec(s.to_string()));
        }
        out.insert(name.trim().to_string(), level.parse()?);
    }
    Ok(out)
}

/// Check that every scope in `wanted` exists in `scopes` (of replica `target`).
pub fn validate(
    wanted: &BTreeMap<String, ScopeLevel>,
    scopes: &[Scope],
    target: &str,
) -> Result<(), Error> {
    let names = || scopes.iter().map(|s| s.name.as_str());
    let unknown: Vec<Unknown> = wanted
        .keys()
        .filter(|w| !names().any(|n| n == w.as_str()))
        .map(|w| Unknown {
            name: w.clone(),
            suggestions: suggest(w, names()),
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::UnknownScopes {
        target: target.to_string(),
        unknown,
        valid: names().map(str::to_string).collect(),
    })
}

/// The updates to send to one replica (scopes checked by [`validate`] before).
pub fn updates(wanted: &BTreeMap<String, ScopeLevel>, scopes: &[Scope]) -> Vec<ScopeUpdate> {
    wanted
        .iter()
        .filter_map(|(name, level)| {
            scopes
                .iter()
                .find(|s| &s.name == name)
                .map(|s| ScopeUpdate::new(s, *level))
        })
        .collect()
}

/// `GET /scopej/`.
pub async fn list(client: &mut AdminClient) -> crate::Result<Vec<Scope>> {
    let body = client.get("scopej/").await?;
    Ok(parse_scopes(&body, client.target())?)
}

/// `PUT /scopej/<scope>` for each update.
pub async fn set(client: &mut AdminClient, updates: &[ScopeUpdate]) -> crate::Result<()> {
    for u in updates {
        let body = serde_json::to_vec(u).map_err(|source| Error::Encode {
            scope: u.name.clone(),
            source,
        })?;
        client
            .put_json(
                &format!("scopej/{}", encode_segment(&u.name)),
                Bytes::from(body),
            )
            .await?;
    }
    Ok(())
}

/// Percent-encode a path segment (scope names are words, but they come from the user).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One row of the scope table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeRow {
    /// Scope name.
    pub name: String,
    /// Output level.
    pub level: String,
    /// Stack-trace level.
    #[serde(rename = "stackTraceLevel")]
    pub stack_trace_level: String,
    /// Whether callers are logged.
    #[serde(rename = "logCallers")]
    pub log_callers: bool,
    /// What it logs.
    pub description: String,
}

impl From<&Scope> for ScopeRow {
    fn from(s: &Scope) -> Self {
        Self {
            name: s.name.clone(),
            level: s.output_level.clone(),
            stack_trace_level: s.stack_trace_level.clone(),
            log_callers: s.log_callers,
            description: s.description.clone(),
        }
    }
}

impl Tabular for ScopeRow {
    const KIND: &'static str = "Scope";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["SCOPE", "LEVEL", "STACK TRACE", "DESCRIPTION"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        vec![
            Cell::plain(&self.name),
            Cell::plain(&self.level),
            Cell::plain(&self.stack_trace_level),
            Cell::or_none(&self.description),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPES: &str = r#"[
      {"name":"ads","description":"ads debugging","output_level":"info","stack_trace_level":"none","log_callers":false},
      {"name":"default","description":"Unscoped logging messages.","output_level":"info","stack_trace_level":"none","log_callers":true},
      {"name":"authorization","description":"Istio Authorization Policy","output_level":"info","stack_trace_level":"none","log_callers":false,"future":1}
    ]"#;

    #[test]
    fn parses_and_sorts_scopes() {
        let s = parse_scopes(SCOPES.as_bytes(), "istiod-1").unwrap();
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, vec!["ads", "authorization", "default"]);
        assert!(s[2].log_callers);
        let e = parse_scopes(b"<html>", "istio-system/istiod-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the ControlZ scopes of istio-system/istiod-1"
        );
    }

    #[test]
    fn scope_levels() {
        assert_eq!("warning".parse::<ScopeLevel>().unwrap(), ScopeLevel::Warn);
        assert_eq!("off".parse::<ScopeLevel>().unwrap(), ScopeLevel::None);
        assert_eq!("DEBUG".parse::<ScopeLevel>().unwrap(), ScopeLevel::Debug);
        assert!(matches!(
            "trace".parse::<ScopeLevel>(),
            Err(Error::BadScopeLevel { .. })
        ));
    }

    #[test]
    fn specs_validate_and_keep_stack_trace_and_callers() {
        let scopes = parse_scopes(SCOPES.as_bytes(), "x").unwrap();
        let want = parse_specs(&["ads=debug", "default:warn"]).unwrap();
        validate(&want, &scopes, "x").unwrap();
        let u = updates(&want, &scopes);
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"[{"name":"ads","output_level":"debug","stack_trace_level":"none","log_callers":false},{"name":"default","output_level":"warn","stack_trace_level":"none","log_callers":true}]"#
        );
        let bad = parse_specs(&["adss=debug"]).unwrap();
        let e = validate(&bad, &scopes, "istio-system/istiod-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown scope \"adss\" on istio-system/istiod-1"
        );
        let hint = crate::Hint::hint(&e).unwrap();
        assert_eq!(
            hint,
            "did you mean: adss → ads; valid scopes: ads, authorization, default"
        );
        assert!(matches!(parse_specs(&["ads"]), Err(Error::BadScopeSpec(_))));
    }

    #[test]
    fn scope_table() {
        let scopes = parse_scopes(SCOPES.as_bytes(), "x").unwrap();
        let rows: Vec<ScopeRow> = scopes.iter().map(ScopeRow::from).collect();
        let mut out = Vec::new();
        crate::render::write_rows(&rows, &Default::default(), &mut out).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap(), @r"
        SCOPE           LEVEL   STACK TRACE   DESCRIPTION
        ads             info    none          ads debugging
        authorization   info    none          Istio Authorization Policy
        default         info    none          Unscoped logging messages.
        ");
    }
}
