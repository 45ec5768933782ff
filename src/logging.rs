//! `RCACHE_LOG`: a tracing filter, written to stderr. Off unless set, so that on the wrapper
//! path stderr carries exactly the compiler's output.

/// Installs the subscriber for `filter` (`debug`, `rcache=trace`, ...); does nothing for `None`.
pub fn init(filter: Option<&str>) {
    let Some(filter) = filter.filter(|filter| !filter.is_empty()) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .try_init();
}
