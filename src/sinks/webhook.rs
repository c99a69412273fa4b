//! Webhook sink (ureq): built in its own change.

use std::sync::Arc;
use std::time::Instant;

use super::{Sink, SinkError, SinkStats};
use crate::config::WebhookConfig;
use crate::events::Event;

/// The webhook sink.
pub struct WebhookSink {
    config: WebhookConfig,
}

impl WebhookSink {
    /// A sink POSTing every event to `config.url`.
    ///
    /// # Errors
    /// Not built yet.
    pub fn new(config: &WebhookConfig) -> Result<Self, SinkError> {
        let _ = Self {
            config: config.clone(),
        };
        Err(SinkError::Other("the webhook sink is not built yet".into()))
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> String {
        format!("webhook:{}", self.config.url)
    }
    fn start(&mut self, _stats: Arc<SinkStats>) -> Result<(), SinkError> {
        Ok(())
    }
    fn deliver(&mut self, _event: &Event, _stats: &SinkStats) {}
    fn close(&mut self, _deadline: Instant, _stats: &SinkStats) {}
}
