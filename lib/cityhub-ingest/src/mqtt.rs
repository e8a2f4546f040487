//! The MQTT southbound: one client of the broker `--mqtt-ingest` names, subscribed to the topics
//! of IoT Agents (`/<apikey>/<device_id>/attrs`, the same under `/json/` and `/ul/`, and the
//! single-attribute form `.../attrs/<attr>`), handing each message to the [`Agent`].
//!
//! The client subscribes again on every connection (a clean session), and after a lost
//! connection reconnects with a backoff doubling from 100 ms to 10 s. A message is read while
//! the next waits in the broker's and the socket's buffers: when the writer's queue is full the
//! client stops reading, and the broker holds the rest.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};

use crate::agent::{Agent, Message};
use crate::payload::Format;

/// The topic filters subscribed to.
pub const TOPICS: [&str; 6] =
    ["/+/+/attrs", "/json/+/+/attrs", "/ul/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs/+", "/ul/+/+/attrs/+"];

/// What a topic names: the format (None: sniffed), apikey, device, and the attribute of the
/// single-attribute form.
#[derive(Debug, PartialEq, Eq)]
pub struct Topic<'a> {
    pub format: Option<Format>,
    pub apikey: &'a str,
    pub device_id: &'a str,
    pub single: Option<&'a str>,
}

/// Reads a device topic; None for any other.
pub fn topic(name: &str) -> Option<Topic<'_>> {
    let mut parts: Vec<&str> = name.strip_prefix('/')?.split('/').collect();
    let format = match parts.first() {
        Some(&"json") if parts.len() >= 4 => Some(Format::Json),
        Some(&"ul") if parts.len() >= 4 => Some(Format::UltraLight),
        _ => None,
    };
    if format.is_some() {
        parts.remove(0);
    }
    match parts.as_slice() {
        [apikey, device_id, "attrs"] if !apikey.is_empty() && !device_id.is_empty() => {
            Some(Topic { format, apikey, device_id, single: None })
        }
        [apikey, device_id, "attrs", attr] if !apikey.is_empty() && !device_id.is_empty() && !attr.is_empty() => {
            Some(Topic { format, apikey, device_id, single: Some(attr) })
        }
        _ => None,
    }
}

/// Where the broker is: `mqtt://HOST:PORT` (port 1883 when not given).
pub fn broker(url: &str) -> Result<(String, u16), String> {
    let rest =
        url.strip_prefix("mqtt://").ok_or_else(|| format!("--mqtt-ingest {url:?} must be mqtt://HOST[:PORT]"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => {
            (host, port.parse::<u16>().map_err(|_| format!("--mqtt-ingest {url:?}: bad port {port:?}"))?)
        }
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(format!("--mqtt-ingest {url:?} names no host"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// Starts the client (on the current runtime); it runs as long as the process.
pub fn start(agent: Arc<Agent>, url: &str) -> Result<(), String> {
    let (host, port) = broker(url)?;
    let id = format!("cityhub-ingest-{}", uuid::Uuid::new_v4().simple());
    let url = url.to_owned();
    tokio::spawn(async move {
        // The broker is the operator's (`--mqtt-ingest`), not a client's: any address may be it.
        let mut options = match cityhub_egress::Egress::operator().mqtt_options(&id, &host, port).await {
            Ok(options) => options,
            Err(e) => return tracing::error!(broker = %url, error = %e, "MQTT ingestion cannot reach its broker"),
        };
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, events) = AsyncClient::new(options, 64);
        run(agent, client, events, url).await;
    });
    Ok(())
}

async fn run(agent: Arc<Agent>, client: AsyncClient, mut events: rumqttc::EventLoop, url: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(broker = %url, "MQTT ingestion connected");
                for filter in TOPICS {
                    if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, filter, "MQTT ingestion could not subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(t) = topic(&publish.topic) else { continue };
                let message = Message {
                    apikey: t.apikey,
                    device_id: t.device_id,
                    format: t.format,
                    single: t.single,
                    payload: &publish.payload,
                    source: format!("mqtt {}", publish.topic),
                    tenant: None,
                };
                // A refusal is counted and kept as a dead letter by the agent.
                let _ = agent.submit(message, false).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(broker = %url, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT ingestion lost its broker");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_read_and_others_do_not() {
        assert_eq!(topic("/k/d/attrs"), Some(Topic { format: None, apikey: "k", device_id: "d", single: None }));
        assert_eq!(topic("/json/k/d/attrs").unwrap().format, Some(Format::Json));
        assert_eq!(topic("/ul/k/d/attrs").unwrap().format, Some(Format::UltraLight));
        assert_eq!(topic("/k/d/attrs/t").unwrap().single, Some("t"));
        assert_eq!(
            topic("/ul/k/d/attrs/t").unwrap(),
            Topic { format: Some(Format::UltraLight), apikey: "k", device_id: "d", single: Some("t") }
        );
        assert_eq!(topic("/json/d/attrs"), Some(Topic { format: None, apikey: "json", device_id: "d", single: None }));
        for other in ["k/d/attrs", "/k/d/cmd", "/k//attrs", "/a/b/c/d/e"] {
            assert_eq!(topic(other), None, "{other}");
        }
    }

    #[test]
    fn broker_urls() {
        assert_eq!(broker("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(broker("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(broker("http://x").unwrap_err().contains("mqtt://"));
        assert!(broker("mqtt://x:port").unwrap_err().contains("bad port"));
    }
}
