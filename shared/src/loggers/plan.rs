//! What to change: `name=level` specs, their check against a pod's own logger list (with
//! closest-name suggestions), the `/logging` requests that carry them out, and how to go back.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;

use super::Error;
use super::model::{Level, Loggers, StartLevels};

/// One `LOGGER=LEVEL` (or `LOGGER:LEVEL`) from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelSpec {
    /// Logger name, e.g. `rbac`.
    pub logger: String,
    /// Wanted level.
    pub level: Level,
}

impl FromStr for LevelSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.rsplit_once('=').or_else(|| t.rsplit_once(':'));
        let Some((name, level)) = split else {
            return Err(Error::BadSpec(s.to_string()));
        };
        let name = name.trim();
        if name.is_empty() || level.trim().is_empty() {
            return Err(Error::BadSpec(s.to_string()));
        }
        Ok(LevelSpec {
            logger: name.to_string(),
            level: level.parse()?,
        })
    }
}

/// True when a positional argument is a `NAME=LEVEL`/`NAME:LEVEL` spec rather than a pod name
/// (pod names never contain `=` or `:`).
pub fn looks_like_spec(arg: &str) -> bool {
    arg.contains('=') || arg.contains(':')
}

/// Parse specs; a logger named twice takes the last level.
pub fn parse_specs<S: AsRef<str>>(specs: &[S]) -> Result<BTreeMap<String, Level>, Error> {
    let mut out = BTreeMap::new();
    for s in specs {
        let spec: LevelSpec = s.as_ref().parse()?;
        out.insert(spec.logger, spec.level);
    }
    Ok(out)
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `--level L` (every logger) and/or named loggers, applied in that order.
    Set {
        /// `--level`: every logger first.
        all: Option<Level>,
        /// Then these loggers.
        loggers: BTreeMap<String, Level>,
    },
    /// `--reset`: back to the levels the pod was started with.
    Reset,
}

impl Change {
    /// Only named loggers.
    pub fn loggers(loggers: BTreeMap<String, Level>) -> Self {
        Change::Set { all: None, loggers }
    }

    /// Only `--level`.
    pub fn all(level: Level) -> Self {
        Change::Set {
            all: Some(level),
            loggers: BTreeMap::new(),
        }
    }

    /// The logger names that must exist on every pod.
    pub fn named(&self) -> Vec<&String> {
        match self {
            Change::Set { loggers, .. } => loggers.keys().collect(),
            Change::Reset => Vec::new(),
        }
    }
}

/// One request to `POST /logging`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// `?level=L`: all loggers.
    All(Level),
    /// `?name=L` for one logger, `?paths=a:L,b:L` for several.
    Set(BTreeMap<String, Level>),
}

impl Step {
    /// The query parameters of this request.
    pub fn params(&self) -> Vec<(String, String)> {
        match self {
            Step::All(l) => vec![("level".into(), l.to_string())],
            Step::Set(m) if m.len() == 1 => {
                m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
            }
            Step::Set(m) => vec![("paths".into(), paths_value(m))],
        }
    }

    /// `level=debug`, or `rbac=debug jwt=trace`.
    pub fn describe(&self) -> String {
        match self {
            Step::All(l) => format!("level={l}"),
            Step::Set(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// `a:debug,b:info`, the value of `?paths=` (Envoy ≥ 1.18).
pub fn paths_value(m: &BTreeMap<String, Level>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A logger name a pod does not have, and the closest names it does have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// What was asked for.
    pub name: String,
    /// Up to five close names (edit distance, substring), best first.
    pub suggestions: Vec<String>,
}

/// The names in `wanted` that `loggers` does not have.
pub fn unknown_loggers<'a>(
    wanted: impl IntoIterator<Item = &'a String>,
    loggers: &Loggers,
) -> Vec<Unknown> {
    wanted
        .into_iter()
        .filter(|n| !loggers.contains(n))
        .map(|n| Unknown {
            name: n.clone(),
            suggestions: suggest(n, loggers.names()),
        })
        .collect()
}

/// Up to five names close to `name`: the same ignoring case, containing it or contained in it,
/// or within a small edit distance. Best first, then by name.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let limit = (wanted.chars().count() / 3).max(1);
    let mut scored: Vec<(u8, usize, &str)> = candidates
        .filter_map(|c| {
            let lc = c.to_ascii_lowercase();
            let d = edit_distance(&wanted, &lc);
            if lc == wanted {
                Some((0, 0, c))
            } else if (wanted.len() >= 2 && lc.contains(&wanted))
                || (lc.len() * 2 >= wanted.len() && wanted.contains(&lc))
            {
                Some((1, d, c))
            } else if d <= limit {
                Some((2, d, c))
            } else {
                None
            }
        })
        .collect();
    scored.sort_by(|a, b| (a.1, a.0, a.2).cmp(&(b.1, b.0, b.2)));
    scored
        .into_iter()
        .take(5)
        .map(|(_, _, c)| c.to_string())
        .collect()
}

/// Edit distance over chars, a swap of two neighbours counting as one edit (optimal string
/// alignment): `modle` is one edit from `model`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The requests that carry out `change` on a pod with these loggers and start levels.
/// Named loggers must have been checked with [`unknown_loggers`] first.
pub fn steps(change: &Change, loggers: &Loggers, start: &StartLevels) -> Vec<Step> {
    match change {
        Change::Set { all, loggers } => {
            let mut out: Vec<Step> = all.iter().map(|l| Step::All(*l)).collect();
            if !loggers.is_empty() {
                out.push(Step::Set(loggers.clone()));
            }
            out
        }
        Change::Reset => {
            let mut out = vec![Step::All(start.level)];
            let overrides: BTreeMap<String, Level> = start
                .components
                .iter()
                .filter(|(n, l)| loggers.contains(n) && **l != start.level)
                .map(|(n, l)| (n.clone(), *l))
                .collect();
            if !overrides.is_empty() {
                out.push(Step::Set(overrides));
            }
            out
        }
    }
}

/// The levels `before` should have after `steps`.
pub fn expected(before: &Loggers, steps: &[Step]) -> Loggers {
    let mut out = before.clone();
    for s in steps {
        match s {
            Step::All(l) => out.0.values_mut().for_each(|v| *v = *l),
            Step::Set(m) => {
                for (k, v) in m {
                    out.0.insert(k.clone(), *v);
                }
            }
        }
    }
    out
}

/// The loggers whose level in `actual` is not what `wanted` says: `(name, wanted, actual)`.
pub fn mismatches(wanted: &Loggers, actual: &Loggers) -> Vec<(String, Level, Option<Level>)> {
    wanted
        .0
        .iter()
        .filter(|(k, v)| actual.get(k) != Some(**v))
        .map(|(k, v)| (k.clone(), *v, actual.get(k)))
        .collect()
}

/// The loggers a change is about, for output: the named ones, or all for `--level`/`--reset`.
pub fn touched(change: &Change, loggers: &Loggers) -> Vec<String> {
    match change {
        Change::Set { all: None, loggers } => loggers.keys().cloned().collect(),
        Change::Set { all: Some(_), .. } | Change::Reset => {
            loggers.names().map(str::to_string).collect()
        }
    }
}

/// What to set to go from `current` back to `previous`: every logger whose level differs.
/// Loggers that appeared meanwhile are left alone (they have no previous level).
pub fn restore_plan(previous: &Loggers, current: &Loggers) -> BTreeMap<String, Level> {
    previous
        .0
        .iter()
        .filter(|(k, v)| current.get(k).is_some_and(|c| c != **v))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Command-line arguments that set `touched` back to their `previous` levels by hand:
/// `rbac=warning`, or `--level warning misc=error` when every logger was touched.
pub fn restore_args(previous: &Loggers, touched: &[String]) -> Vec<String> {
    let levels: Vec<(&String, Level)> = touched
        .iter()
        .filter_map(|n| previous.get(n).map(|l| (n, l)))
        .collect();
    let mut out = Vec::new();
    let mut base = None;
    if touched.len() >= previous.len() && !levels.is_empty() {
        let mut counts: BTreeMap<Level, usize> = BTreeMap::new();
        for (_, l) in &levels {
            *counts.entry(*l).or_default() += 1;
        }
        base = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(l, _)| l);
        if let Some(b) = base {
            out.push("--level".to_string());
            out.push(b.to_string());
        }
    }
    out.extend(
        levels
            .into_iter()
            .filter(|(_, l)| Some(*l) != base)
            .map(|(n, l)| format!("{n}={l}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loggers(pairs: &[(&str, Level)]) -> Loggers {
        Loggers(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    fn fixture() -> Loggers {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/istio/current/envoy-logging/logging.txt"
        );
        Loggers::parse(&std::fs::read_to_string(path).unwrap(), "fixture").unwrap()
    }

    #[test]
    fn specs_with_equals_or_colon() {
        let s: LevelSpec = "rbac=debug".parse().unwrap();
        assert_eq!((s.logger.as_str(), s.level), ("rbac", Level::Debug));
        let s: LevelSpec = "jwt:warn".parse().unwrap();
        assert_eq!((s.logger.as_str(), s.level), ("jwt", Level::Warning));
        let s: LevelSpec = " http2 = TRACE ".parse().unwrap();
        assert_eq!((s.logger.as_str(), s.level), ("http2", Level::Trace));
        assert!(matches!(
            "rbac".parse::<LevelSpec>(),
            Err(Error::BadSpec(_))
        ));
        assert!(matches!(
            "=debug".parse::<LevelSpec>(),
            Err(Error::BadSpec(_))
        ));
        assert!(matches!(
            "rbac=".parse::<LevelSpec>(),
            Err(Error::BadSpec(_))
        ));
        assert!(matches!(
            "rbac=loud".parse::<LevelSpec>(),
            Err(Error::BadLevel { .. })
        ));
        let m = parse_specs(&["rbac=debug", "jwt:trace", "rbac=info"]).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![("jwt".into(), Level::Trace), ("rbac".into(), Level::Info)]
        );
        assert!(looks_like_spec("rbac=debug") && looks_like_spec("rbac:debug"));
        assert!(!looks_like_spec("deploy/customer") && !looks_like_spec("customer-1"));
    }

    #[test]
    fn unknown_names_get_close_suggestions() {
        let l = fixture();
        let wanted = vec!["rbacc".to_string(), "rbac".to_string(), "htp".to_string()];
        let u = unknown_loggers(&wanted, &l);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].name, "rbacc");
        assert_eq!(u[0].suggestions[0], "rbac");
        assert_eq!(u[1].suggestions[0], "http");
        assert_eq!(suggest("RBAC", l.names()), vec!["rbac"]);
        assert_eq!(suggest("health", l.names())[0], "health_checker");
        assert_eq!(suggest("connection_manager", l.names()), vec!["connection"]);
        assert!(suggest("zzzzzzzzzz", l.names()).is_empty());
        assert!(suggest("a", l.names()).len() <= 5);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("rbac", "rbac"), 0);
        assert_eq!(edit_distance("rbacc", "rbac"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("modle", "model"), 1);
        assert_eq!(edit_distance("rabc", "rbac"), 1);
    }

    #[test]
    fn requests_for_one_many_and_all() {
        let one = Step::Set(parse_specs(&["rbac=debug"]).unwrap());
        assert_eq!(one.params(), vec![("rbac".into(), "debug".into())]);
        let many = Step::Set(parse_specs(&["rbac=debug", "jwt=warn"]).unwrap());
        assert_eq!(
            many.params(),
            vec![("paths".into(), "jwt:warning,rbac:debug".into())]
        );
        assert_eq!(many.describe(), "jwt=warning rbac=debug");
        assert_eq!(
            Step::All(Level::Debug).params(),
            vec![("level".into(), "debug".into())]
        );
    }

    #[test]
    fn reset_goes_to_the_start_levels() {
        let l = loggers(&[
            ("misc", Level::Debug),
            ("rbac", Level::Debug),
            ("http", Level::Debug),
        ]);
        let start = StartLevels {
            level: Level::Info,
            components: BTreeMap::from([
                ("misc".into(), Level::Error),
                ("gone".into(), Level::Trace),
                ("http".into(), Level::Info),
            ]),
            source: super::super::model::StartSource::Args,
        };
        let s = steps(&Change::Reset, &l, &start);
        assert_eq!(
            s,
            vec![
                Step::All(Level::Info),
                Step::Set(BTreeMap::from([("misc".into(), Level::Error)]))
            ]
        );
        let after = expected(&l, &s);
        assert_eq!(
            after,
            loggers(&[
                ("http", Level::Info),
                ("misc", Level::Error),
                ("rbac", Level::Info)
            ])
        );
        assert!(mismatches(&after, &after).is_empty());
        assert_eq!(
            steps(&Change::Reset, &l, &StartLevels::default()),
            vec![Step::All(Level::Warning)]
        );
    }

    #[test]
    fn restore_plan_sets_back_only_what_differs() {
        let previous = loggers(&[
            ("http", Level::Warning),
            ("misc", Level::Error),
            ("rbac", Level::Info),
        ]);
        let current = loggers(&[
            ("http", Level::Debug),
            ("misc", Level::Error),
            ("rbac", Level::Debug),
            ("new", Level::Debug),
        ]);
        let plan = restore_plan(&previous, &current);
        assert_eq!(
            plan.into_iter().collect::<Vec<_>>(),
            vec![
                ("http".into(), Level::Warning),
                ("rbac".into(), Level::Info)
            ]
        );
        assert!(restore_plan(&previous, &previous).is_empty());
        let m = mismatches(&previous, &current);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("http".into(), Level::Warning, Some(Level::Debug)));
    }

    #[test]
    fn restore_by_hand() {
        let previous = loggers(&[
            ("http", Level::Warning),
            ("misc", Level::Error),
            ("rbac", Level::Warning),
        ]);
        assert_eq!(
            restore_args(&previous, &["rbac".into()]),
            vec!["rbac=warning"]
        );
        let all: Vec<String> = previous.names().map(str::to_string).collect();
        assert_eq!(
            restore_args(&previous, &all),
            vec!["--level", "warning", "misc=error"]
        );
    }

    #[test]
    fn touched_loggers() {
        let l = loggers(&[("http", Level::Warning), ("rbac", Level::Info)]);
        let c = Change::loggers(parse_specs(&["rbac=debug"]).unwrap());
        assert_eq!(touched(&c, &l), vec!["rbac"]);
        assert_eq!(c.named(), vec!["rbac"]);
        assert_eq!(
            touched(&Change::all(Level::Debug), &l),
            vec!["http", "rbac"]
        );
        let both = Change::Set {
            all: Some(Level::Info),
            loggers: parse_specs(&["rbac=debug"]).unwrap(),
        };
        assert_eq!(
            steps(&both, &l, &StartLevels::default()),
            vec![
                Step::All(Level::Info),
                Step::Set(parse_specs(&["rbac=debug"]).unwrap())
            ]
        );
    }
}
