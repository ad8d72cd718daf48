//! The crate error, and hints: one line telling the user what to do next.

/// Errors that know what the user can do about them.
pub trait Hint {
    /// A one-line suggestion, if there is one.
    fn hint(&self) -> Option<String>;
}

/// Any failure of the library, by area.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Cluster access and pod resolution.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::Error),
    /// The Envoy admin API.
    #[error(transparent)]
    Admin(#[from] crate::admin::Error),
    /// Reading `-f` input.
    #[error(transparent)]
    Input(#[from] crate::input::Error),
    /// config_dump parsing and views.
    #[error(transparent)]
    Dump(#[from] crate::dump::Error),
    /// Logger levels.
    #[error(transparent)]
    Loggers(#[from] crate::loggers::Error),
    /// Sync status.
    #[error(transparent)]
    Sync(#[from] crate::sync::Error),
    /// JWKS and JWT.
    #[error(transparent)]
    Jwks(#[from] crate::jwks::Error),
    /// Writing output.
    #[error(transparent)]
    Render(#[from] crate::render::Error),
    /// The user pressed Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Cluster(e) => e.hint(),
            Error::Admin(e) => e.hint(),
            Error::Input(e) => e.hint(),
            Error::Dump(e) => e.hint(),
            Error::Loggers(e) => e.hint(),
            Error::Sync(e) => e.hint(),
            Error::Jwks(e) => e.hint(),
            Error::Render(_) | Error::Interrupted => None,
        }
    }
}

/// The first hint found along an error chain.
pub fn hint_for(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let h = if let Some(x) = e.downcast_ref::<Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::cluster::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::admin::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::input::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::dump::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::loggers::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::sync::Error>() {
            x.hint()
        } else if let Some(x) = e.downcast_ref::<crate::jwks::Error>() {
            x.hint()
        } else {
            None
        };
        if h.is_some() {
            return h;
        }
        cur = e.source();
    }
    None
}

/// The messages of an error and its sources, each once: a source whose text its predecessor
/// already contains (`#[error(transparent)]` wrappers, messages that quote their cause) is
/// left out.
pub fn messages(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut last = out[0].clone();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        if !last.contains(&msg) {
            out.push(msg.clone());
        }
        last = msg;
        cur = e.source();
    }
    out
}

/// An error and its causes on one line, `: `-separated.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    messages(err).join(": ")
}

/// The error block every plugin prints: `error: <prefix><message>`, `  caused by: <cause>`
/// lines, `hint: <what to do>`; remote text sanitized. `paint` styles the two labels.
pub fn block(
    err: &(dyn std::error::Error + 'static),
    prefix: &str,
    paint: &dyn Fn(&'static str) -> String,
) -> String {
    use crate::render::sanitize;
    let msgs = messages(err);
    let mut text = format!("{} {prefix}{}\n", paint("error:"), sanitize(&msgs[0]));
    for m in &msgs[1..] {
        text.push_str(&format!("  caused by: {}\n", sanitize(m)));
    }
    if let Some(h) = hint_for(err) {
        text.push_str(&format!("{} {}\n", paint("hint:"), sanitize(&h)));
    }
    text
}

/// True when the chain contains [`Error::Interrupted`].
pub fn is_interrupted(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted)) {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Chain {
        #[error("failed to infer config: kubeconfig: ({0})")]
        Quotes(#[source] std::io::Error),
        #[error(transparent)]
        Transparent(#[from] std::io::Error),
        #[error("connecting to pod ns/a failed")]
        Wraps(#[source] Box<Chain>),
    }

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn each_message_once() {
        // a cause quoted inside its parent's message is not repeated
        let e = Chain::Quotes(io());
        assert_eq!(
            messages(&e),
            ["failed to infer config: kubeconfig: (no such file)"]
        );
        // a transparent wrapper prints its inner message once
        let e = Chain::Wraps(Box::new(Chain::Transparent(io())));
        assert_eq!(
            messages(&e),
            ["connecting to pod ns/a failed", "no such file"]
        );
        assert_eq!(one_line(&e), "connecting to pod ns/a failed: no such file");
    }

    #[test]
    fn block_has_error_causes_and_hint() {
        let e = Error::Input(crate::input::Error::Parse {
            path: "d.json".into(),
            what: "Envoy config_dump JSON",
            line: 1,
            column: 2,
            offset: 1,
            source: serde_json::from_str::<serde_json::Value>("{x").unwrap_err(),
        });
        let text = block(&e, "pod ns/a: ", &|l| l.to_string());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("error: pod ns/a: d.json is not valid"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("  caused by: key must be a string"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("hint: is the file complete?"),
            "{text}"
        );
        assert_eq!(lines.len(), 3, "{text}");
    }
}
