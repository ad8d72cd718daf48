//! `stats`: Envoy's `GET /stats` (text format, `name: value` lines) as `NAME  VALUE`, filtered by
//! a regular expression such as `jwt_authn.*denied` or `rbac.*denied`.

use serde::Serialize;

use crate::render::{Cell, Tabular};

/// A stat's value: a number for counters and gauges, text for histograms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatValue {
    /// Counter or gauge.
    Number(u64),
    /// Histogram summary or anything else.
    Text(String),
}

impl std::fmt::Display for StatValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// One stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatRow {
    /// Full stat name.
    pub name: String,
    /// Value.
    pub value: StatValue,
}

impl Tabular for StatRow {
    const KIND: &'static str = "Stat";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["NAME", "VALUE"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        vec![Cell::plain(&self.name), Cell::plain(self.value.to_string())]
    }
}

/// Parse the text of `/stats` and keep the stats whose name matches `filter`, sorted by name.
pub fn stat_rows(text: &str, filter: Option<&regex::Regex>) -> Vec<StatRow> {
    let mut rows: Vec<StatRow> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            let name = name.trim();
            if name.is_empty() || filter.is_some_and(|re| !re.is_match(name)) {
                return None;
            }
            let value = value.trim();
            Some(StatRow {
                name: name.to_string(),
                value: value
                    .parse()
                    .map(StatValue::Number)
                    .unwrap_or_else(|_| StatValue::Text(value.to_string())),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_filters() {
        let text = "http.inbound.rbac.denied: 3\nhttp.inbound.jwt_authn.denied: 0\n\
                    cluster.x.upstream_rq_time: P0(nan,1) P25(nan,2)\nserver.live: 1\n";
        let re = regex::Regex::new("(jwt_authn|rbac).*denied").unwrap();
        let rows = stat_rows(text, Some(&re));
        assert_eq!(
            rows,
            vec![
                StatRow {
                    name: "http.inbound.jwt_authn.denied".into(),
                    value: StatValue::Number(0)
                },
                StatRow {
                    name: "http.inbound.rbac.denied".into(),
                    value: StatValue::Number(3)
                },
            ]
        );
        let all = stat_rows(text, None);
        assert_eq!(all[0].value.to_string(), "P0(nan,1) P25(nan,2)");
        assert_eq!(
            serde_json::to_string(&all[1]).unwrap(),
            r#"{"name":"http.inbound.jwt_authn.denied","value":0}"#
        );
    }
}
