//! What the app logs, captured in memory while `CAPTURING` (the logging test reads it), and the
//! test binary's one tracing subscriber.

use std::sync::{
    Arc, LazyLock, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tracing_subscriber::fmt::MakeWriter;

/// Everything logged while `CAPTURING` is on (the logging test reads it).
pub static CAPTURED: LazyLock<Captured> = LazyLock::new(Captured::default);
pub static CAPTURING: AtomicBool = AtomicBool::new(false);

/// A log sink in memory.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One global subscriber for the whole test binary (thread-local ones race with other tests'
/// threads over callsite interest): a JSON capture layer, on only while `CAPTURING`, and with
/// `TEST_LOG` set, readable logs on stdout.
pub(super) static TRACING: LazyLock<()> = LazyLock::new(|| {
    use tracing_subscriber::{filter, fmt, prelude::*};
    let capture = fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(CAPTURED.clone())
        .with_filter(filter::dynamic_filter_fn(|meta, _| {
            // The tests' own HTML parser (scraper) reads pages aloud at DEBUG: not the app's.
            let test_side = ["html5ever", "markup5ever", "selectors"]
                .iter()
                .any(|t| meta.target().starts_with(t));
            CAPTURING.load(Ordering::Relaxed)
                && *meta.level() <= tracing::Level::DEBUG
                && !test_side
        }));
    let stdout = std::env::var("TEST_LOG")
        .is_ok()
        .then(|| fmt::layer().with_filter(filter::EnvFilter::new("debug,sqlx=warn")));
    tracing_subscriber::registry()
        .with(capture)
        .with(stdout)
        .init();
});
