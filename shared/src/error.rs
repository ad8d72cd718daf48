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
