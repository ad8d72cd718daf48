//! Waiting before a restore: Ctrl-C/SIGTERM listened for from before the change, and a
//! countdown on stderr.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::Error;

/// Ctrl-C and SIGTERM. The handlers are installed when this is created, so a signal that
/// arrives while the change is being applied is not lost (and does not kill the process).
#[derive(Debug)]
pub struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Install the handlers.
    pub fn listen() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
                term: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves at the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The time was up.
    Elapsed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Wait until `deadline` or a signal. On a terminal, redraw `restoring in 4m59s…` every second;
/// otherwise the caller has printed one line already.
pub async fn countdown(
    deadline: Instant,
    interrupts: &mut Interrupts,
    tty: bool,
    err: &mut dyn Write,
) -> Waited {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            _ = &mut sleep => break Waited::Elapsed,
            _ = interrupts.recv() => break Waited::Interrupted,
            _ = tick.tick(), if tty => {
                let left = deadline.saturating_duration_since(Instant::now());
                let left = Duration::from_secs(left.as_secs_f64().ceil() as u64);
                let _ = write!(err, "\r\x1b[2Krestoring in {}… (Ctrl-C restores now)", format_duration(left));
                let _ = err.flush();
            }
        }
    };
    if tty {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
    outcome
}

/// Go-style durations: `5m0s`, `1h0m0s`, `30s`, `1.5s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let frac = d.subsec_millis();
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[tokio::test]
    async fn countdown_elapses_and_redraws_on_a_tty() {
        let mut i = Interrupts::listen().unwrap();
        let mut err = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(1100);
        let w = countdown(deadline, &mut i, true, &mut err).await;
        assert_eq!(w, Waited::Elapsed);
        let s = String::from_utf8(err).unwrap();
        assert!(s.contains("restoring in 2s…"), "{s:?}");
        assert!(s.contains("restoring in 1s…"), "{s:?}");
        assert!(s.ends_with("\r\x1b[2K"));
        let mut err = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(50);
        countdown(deadline, &mut i, false, &mut err).await;
        assert!(err.is_empty(), "no redraw off a terminal");
    }
}
