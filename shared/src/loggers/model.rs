//! Envoy's logger list (`POST /logging` → `active loggers:` text), levels, and the level a
//! sidecar was started with.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::Error;
use crate::render::{Cell, Tabular, Tone};

/// An Envoy log level, as `/logging` accepts and prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warning` (also accepted as `warn`)
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `off`
    Off,
}

impl Level {
    /// Every level, most verbose first.
    pub const ALL: [Level; 7] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
        Level::Off,
    ];

    /// The valid names, for messages.
    pub const NAMES: &'static str = "trace, debug, info, warning (warn), error, critical, off";

    /// The name Envoy uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Off => "off",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Error;

    /// Case-insensitive; `warn` is `warning` (as istioctl maps it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        match l.as_str() {
            "warn" => Ok(Level::Warning),
            _ => Level::ALL
                .into_iter()
                .find(|x| x.as_str() == l)
                .ok_or_else(|| Error::BadLevel {
                    level: s.to_string(),
                }),
        }
    }
}

/// The loggers of one Envoy and their levels, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Loggers(pub BTreeMap<String, Level>);

impl Loggers {
    /// Parse Envoy's answer to `POST /logging`:
    /// `active loggers:\n  admin: warning\n  aws: warning\n...`. `target` names the Envoy in errors.
    pub fn parse(text: &str, target: &str) -> Result<Self, Error> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, l)) if l.trim() == "active loggers:" => {}
            other => {
                return Err(Error::Parse {
                    target: target.to_string(),
                    line: other.map_or(1, |(i, _)| i + 1),
                    text: other.map(|(_, l)| l.to_string()).unwrap_or_default(),
                });
            }
        }
        let mut map = BTreeMap::new();
        for (i, line) in lines {
            let parsed = line
                .trim()
                .rsplit_once(':')
                .and_then(|(name, level)| Some((name.trim(), level.parse::<Level>().ok()?)))
                .filter(|(name, _)| !name.is_empty());
            let Some((name, level)) = parsed else {
                return Err(Error::Parse {
                    target: target.to_string(),
                    line: i + 1,
                    text: line.to_string(),
                });
            };
            map.insert(name.to_string(), level);
        }
        Ok(Loggers(map))
    }

    /// The level of one logger.
    pub fn get(&self, name: &str) -> Option<Level> {
        self.0.get(name).copied()
    }

    /// True when the logger exists.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Logger names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of loggers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when Envoy listed no logger.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Table rows, each highlighted when its level differs from the start level.
    pub fn rows(&self, start: &StartLevels) -> Vec<LoggerRow> {
        self.0
            .iter()
            .map(|(name, level)| LoggerRow::new(name, *level, start))
            .collect()
    }
}

/// One row of `kubectl envoy-log POD`: a logger and its level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggerRow {
    /// Logger name, e.g. `rbac`.
    pub name: String,
    /// Current level.
    pub level: Level,
    /// The level the sidecar was started with (what `--reset` goes back to).
    #[serde(rename = "startLevel")]
    pub start_level: Level,
}

impl LoggerRow {
    /// A row for `name` at `level`, compared with the start levels.
    pub fn new(name: &str, level: Level, start: &StartLevels) -> Self {
        Self {
            name: name.to_string(),
            level,
            start_level: start.level_of(name),
        }
    }
}

impl Tabular for LoggerRow {
    const KIND: &'static str = "Logger";
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["LOGGER", "LEVEL"]
    }
    fn row(&self, _wide: bool) -> Vec<Cell<'_>> {
        let tone = if self.level == self.start_level {
            Tone::Plain
        } else {
            Tone::Highlight
        };
        vec![
            Cell::plain(&self.name),
            Cell::toned(self.level.as_str(), tone),
        ]
    }
}

/// Where the start level came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StartSource {
    /// The container's args (`--proxyLogLevel`, Envoy's `-l`/`--log-level`).
    Args,
    /// The `sidecar.istio.io/logLevel` pod annotation.
    Annotation,
    /// Nothing said: Istio's default, `warning`.
    Default,
}

/// The levels an Envoy was started with: one for all loggers, then per-component overrides
/// (`--proxyComponentLogLevel misc:error`, which Istio injects by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartLevels {
    /// The level of every logger not in `components`.
    pub level: Level,
    /// Per-logger overrides.
    pub components: BTreeMap<String, Level>,
    /// Where `level` came from.
    pub source: StartSource,
}

impl Default for StartLevels {
    fn default() -> Self {
        Self {
            level: Level::Warning,
            components: BTreeMap::new(),
            source: StartSource::Default,
        }
    }
}

/// Args carrying the level for all of Envoy's loggers. Istio's agent passes `--proxyLogLevel`
/// on to Envoy as `-l`; plain Envoy containers take `-l`/`--log-level` themselves. The agent's own
/// `--log_output_level default:info` is about its scopes, not Envoy's loggers, and is not used.
const LEVEL_FLAGS: [&str; 3] = ["--proxyLogLevel", "--log-level", "-l"];
const COMPONENT_FLAGS: [&str; 2] = ["--proxyComponentLogLevel", "--component-log-level"];
const LEVEL_ANNOTATION: &str = "sidecar.istio.io/logLevel";
const COMPONENT_ANNOTATION: &str = "sidecar.istio.io/componentLogLevel";

impl StartLevels {
    /// Read the start levels from the sidecar container's args, else the pod's
    /// `sidecar.istio.io/logLevel` / `componentLogLevel` annotations, else `warning`.
    pub fn detect(args: &[String], annotations: &BTreeMap<String, String>) -> Self {
        let mut out = StartLevels::default();
        let from_args = LEVEL_FLAGS
            .iter()
            .find_map(|f| flag_value(args, f))
            .and_then(|v| v.parse::<Level>().ok());
        let from_ann = annotations
            .get(LEVEL_ANNOTATION)
            .and_then(|v| v.parse::<Level>().ok());
        if let Some(l) = from_args {
            out.level = l;
            out.source = StartSource::Args;
        } else if let Some(l) = from_ann {
            out.level = l;
            out.source = StartSource::Annotation;
        }
        let components = COMPONENT_FLAGS
            .iter()
            .find_map(|f| flag_value(args, f))
            .or_else(|| annotations.get(COMPONENT_ANNOTATION).map(String::as_str));
        if let Some(c) = components {
            out.components = parse_components(c);
        }
        out
    }

    /// The start level of one logger.
    pub fn level_of(&self, name: &str) -> Level {
        self.components.get(name).copied().unwrap_or(self.level)
    }
}

/// `--flag=value` or `--flag value`; the last occurrence wins, as in Go's flag package.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(v);
        } else if a == flag
            && let Some(v) = it.next()
        {
            found = Some(v.as_str());
        }
    }
    found
}

/// `misc:error,rbac:debug` → map; malformed items are ignored.
fn parse_components(s: &str) -> BTreeMap<String, Level> {
    s.split(',')
        .filter_map(|item| {
            let (name, level) = item.trim().rsplit_once(':')?;
            Some((name.trim().to_string(), level.parse().ok()?))
        })
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/istio/current/envoy-logging/logging.txt"
    );

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_real_logging_answer() {
        let text = std::fs::read_to_string(FIXTURE).unwrap();
        let l = Loggers::parse(&text, "fixture").unwrap();
        assert_eq!(l.len(), 40);
        assert_eq!(l.get("rbac"), Some(Level::Warning));
        assert_eq!(l.get("wasm"), Some(Level::Warning));
        assert!(l.0.values().all(|v| *v == Level::Warning));
        let names: Vec<&str> = l.names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "rows come sorted by name");
        assert_eq!(names.first(), Some(&"admin"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = Loggers::parse("<html>oops</html>", "pod a/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the logger list of pod a/b: line 1: \"<html>oops</html>\""
        );
        let e = Loggers::parse("active loggers:\n  rbac: loud\n", "x").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(Loggers::parse("active loggers:\n", "x").unwrap().is_empty());
    }

    #[test]
    fn levels_parse_like_istioctl() {
        assert_eq!("warn".parse::<Level>().unwrap(), Level::Warning);
        assert_eq!("WARNING".parse::<Level>().unwrap(), Level::Warning);
        assert_eq!("off".parse::<Level>().unwrap(), Level::Off);
        assert_eq!("critical".parse::<Level>().unwrap(), Level::Critical);
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>().unwrap(), l);
        }
        let e = "none".parse::<Level>().unwrap_err();
        assert_eq!(e.to_string(), "unknown log level \"none\"");
        assert!(crate::Hint::hint(&e).unwrap().contains("warning (warn)"));
    }

    #[test]
    fn start_level_from_args() {
        let none = BTreeMap::new();
        let s = StartLevels::detect(
            &strings(&["proxy", "sidecar", "--proxyLogLevel=debug"]),
            &none,
        );
        assert_eq!((s.level, s.source), (Level::Debug, StartSource::Args));
        let s = StartLevels::detect(
            &strings(&[
                "proxy",
                "--proxyLogLevel",
                "info",
                "--proxyComponentLogLevel",
                "misc:error,rbac:trace",
            ]),
            &none,
        );
        assert_eq!(s.level, Level::Info);
        assert_eq!(s.level_of("misc"), Level::Error);
        assert_eq!(s.level_of("rbac"), Level::Trace);
        assert_eq!(s.level_of("http"), Level::Info);
        // istio's agent scopes are not Envoy's level
        let s = StartLevels::detect(&strings(&["--log_output_level=default:info"]), &none);
        assert_eq!((s.level, s.source), (Level::Warning, StartSource::Default));
        // plain Envoy
        let s = StartLevels::detect(&strings(&["-c", "/etc/envoy.yaml", "-l", "warn"]), &none);
        assert_eq!((s.level, s.source), (Level::Warning, StartSource::Args));
    }

    #[test]
    fn start_level_from_annotation_or_default() {
        let ann = BTreeMap::from([
            (LEVEL_ANNOTATION.to_string(), "error".to_string()),
            (COMPONENT_ANNOTATION.to_string(), "misc:info".to_string()),
        ]);
        let s = StartLevels::detect(&[], &ann);
        assert_eq!((s.level, s.source), (Level::Error, StartSource::Annotation));
        assert_eq!(s.level_of("misc"), Level::Info);
        // args win over the annotation (the injector turned it into the arg)
        let s = StartLevels::detect(&strings(&["--proxyLogLevel=trace"]), &ann);
        assert_eq!(s.level, Level::Trace);
        let s = StartLevels::detect(&[], &BTreeMap::new());
        assert_eq!(s, StartLevels::default());
        assert_eq!(s.level, Level::Warning);
        // an invalid value is ignored
        let s = StartLevels::detect(&strings(&["--proxyLogLevel=loud"]), &BTreeMap::new());
        assert_eq!(s.level, Level::Warning);
    }

    #[test]
    fn rows_are_highlighted_when_not_at_the_start_level() {
        let l = Loggers::parse(
            "active loggers:\n  rbac: debug\n  misc: error\n  http: warning\n",
            "x",
        )
        .unwrap();
        let start = StartLevels {
            components: BTreeMap::from([("misc".into(), Level::Error)]),
            ..StartLevels::default()
        };
        let rows = l.rows(&start);
        let tones: Vec<(String, Tone)> = rows
            .iter()
            .map(|r| (r.name.clone(), r.row(false)[1].tone))
            .collect();
        assert_eq!(
            tones,
            vec![
                ("http".into(), Tone::Plain),
                ("misc".into(), Tone::Plain),
                ("rbac".into(), Tone::Highlight),
            ]
        );
        let mut out = Vec::new();
        crate::render::write_rows(&rows, &Default::default(), &mut out).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap(), @r"
        LOGGER   LEVEL
        http     warning
        misc     error
        rbac     debug
        ");
    }
}
