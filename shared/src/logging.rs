//! Logs to stderr: `-v` count or `RUST_LOG`.

/// Install the tracing subscriber once. `RUST_LOG` wins over `-v`.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},hyper=warn,tower=warn,rustls=warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
    // One rustls provider for the whole process (kube and reqwest share it).
    let _ = rustls::crypto::ring::default_provider().install_default();
}
