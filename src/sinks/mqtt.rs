//! MQTT sink (rumqttc): built in its own change.

use std::sync::Arc;
use std::time::Instant;

use super::{Sink, SinkError, SinkStats};
use crate::config::MqttConfig;
use crate::events::Event;

/// The MQTT sink.
pub struct MqttSink {
    config: MqttConfig,
}

impl MqttSink {
    /// A sink for `config`, publishing under `<topic_prefix>/<device_id>/`.
    ///
    /// # Errors
    /// Not built yet.
    pub fn new(config: &MqttConfig, _device_id: &str) -> Result<Self, SinkError> {
        let _ = Self {
            config: config.clone(),
        };
        Err(SinkError::Other("the MQTT sink is not built yet".into()))
    }
}

impl Sink for MqttSink {
    fn name(&self) -> String {
        format!("mqtt:{}:{}", self.config.host, self.config.port)
    }
    fn start(&mut self, _stats: Arc<SinkStats>) -> Result<(), SinkError> {
        Ok(())
    }
    fn deliver(&mut self, _event: &Event, _stats: &SinkStats) {}
    fn close(&mut self, _deadline: Instant, _stats: &SinkStats) {}
}
