//! Many pods = one function over one pod, fanned out with bounded concurrency and progress.

use std::future::Future;
use std::io::IsTerminal;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Default number of pods worked on at once.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// A progress bar on stderr, shown only when stderr is a terminal and there is more than one item.
pub fn progress(total: usize, message: &str) -> ProgressBar {
    if total < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// Run `f` over `items`, at most `concurrency` at once; results come back in input order.
pub async fn run<I, T, F, Fut>(
    items: Vec<I>,
    concurrency: usize,
    bar: &ProgressBar,
    f: F,
) -> Vec<(I, T)>
where
    I: Clone,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T>,
{
    let out = futures::stream::iter(items.into_iter().map(|i| {
        let fut = f(i.clone());
        async move {
            let r = fut.await;
            bar.inc(1);
            (i, r)
        }
    }))
    .buffered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    bar.finish_and_clear();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_and_bounds_concurrency() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let out = run((0..20).collect(), 3, &ProgressBar::hidden(), |i: u32| {
            let live = live.clone();
            let peak = peak.clone();
            async move {
                let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                live.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(
            out.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            (0..20).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }
}
