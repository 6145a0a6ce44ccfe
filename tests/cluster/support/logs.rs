//! Captured operator logs: a minimal global tracing subscriber that keeps every DEBUG+ line of
//! the operator's crate, so tests can check that no password ever reaches a log.

use std::sync::{Mutex, OnceLock};

struct Capture;

fn captured() -> &'static Mutex<String> {
    static LOGS: OnceLock<Mutex<String>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(String::new()))
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::DEBUG && meta.target().starts_with("authentify")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        if let Ok(mut logs) = captured().lock() {
            logs.push_str(&line);
            logs.push('\n');
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs the capturing subscriber (once per process).
pub fn capture_logs() {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    INSTALLED.get_or_init(|| tracing::subscriber::set_global_default(Capture).is_ok());
}

/// Everything captured so far.
pub fn logs() -> String {
    captured().lock().map(|l| l.clone()).unwrap_or_default()
}
