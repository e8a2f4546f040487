//! Sending one notification message: HTTP POST, or an MQTT publish (clause 7.? MQTT binding:
//! the payload is `{metadata, body}`, the topic is the URI's path). Both under the egress rules
//! (`cityhub_egress`); a failure reads the same whatever the network answered.

use std::time::Duration;

use cityhub_egress::{Egress, EgressClient, EgressError};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

/// Sends a message built by `Compiled::message`; Err says why it was not delivered.
pub async fn send(http: &EgressClient, egress: &Egress, message: &Value, timeout: Duration) -> Result<(), String> {
    let uri = message.get("uri").and_then(Value::as_str).ok_or("the message has no uri")?;
    if uri.starts_with("mqtt://") {
        tokio::time::timeout(timeout, send_mqtt(egress, uri, message))
            .await
            .map_err(|_| EgressError::Unreachable.to_string())?
    } else if uri.starts_with("mqtts://") {
        Err("mqtts endpoints are not supported by this build".to_owned())
    } else {
        send_http(http, uri, message).await
    }
}

async fn send_http(http: &EgressClient, uri: &str, message: &Value) -> Result<(), String> {
    let mut request = http.post(uri);
    for (name, value) in message.get("headers").and_then(Value::as_object).into_iter().flatten() {
        if let Some(value) = value.as_str() {
            request = request.header(name.as_str(), value);
        }
    }
    let body = serde_json::to_vec(&message["body"]).map_err(|e| e.to_string())?;
    let response = http.execute(request.body(body)).await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {}", response.status()))
    }
}

/// The parts of an `mqtt://[user[:password]@]host[:port]/topic` URI.
#[derive(Debug, PartialEq, Eq)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub topic: String,
}

pub fn mqtt_target(uri: &str) -> Result<MqttTarget, String> {
    let rest = uri.split_once("://").map(|(_, r)| r).ok_or("not a URI")?;
    let (authority, topic) = rest.split_once('/').ok_or("an MQTT endpoint needs a topic")?;
    if topic.is_empty() {
        return Err("an MQTT endpoint needs a topic".into());
    }
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (user, password) = match credentials {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(decode(u)), Some(decode(p))),
            None => (Some(decode(c)), None),
        },
        None => (None, None),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"))?),
        None => (host_port.to_owned(), 1883),
    };
    Ok(MqttTarget { host, port, user, password, topic: decode(topic) })
}

async fn send_mqtt(egress: &Egress, uri: &str, message: &Value) -> Result<(), String> {
    let target = mqtt_target(uri)?;
    let payload = serde_json::to_vec(&json!({"metadata": message["headers"], "body": message["body"]}))
        .map_err(|e| e.to_string())?;
    let qos = message.get("qos").and_then(Value::as_u64).unwrap_or(0) as u8;
    let client_id = format!("cityhub-{}", uuid::Uuid::new_v4().simple());
    if message.get("mqttVersion").and_then(Value::as_str) == Some("mqtt5.0") {
        let options = egress.mqtt5_options(&client_id, &target.host, target.port).await.map_err(|e| e.to_string())?;
        publish_v5(options, &target, payload, qos).await
    } else {
        let options = egress.mqtt_options(&client_id, &target.host, target.port).await.map_err(|e| e.to_string())?;
        publish_v311(options, &target, payload, qos).await
    }
}

/// One connection per message: connect, publish, wait for the broker's acknowledgement (QoS 1
/// and 2) or for the packet to leave (QoS 0), disconnect.
async fn publish_v311(
    mut options: rumqttc::MqttOptions,
    target: &MqttTarget,
    payload: Vec<u8>,
    qos: u8,
) -> Result<(), String> {
    use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(user) = &target.user {
        options.set_credentials(user.clone(), target.password.clone().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(options, 4);
    let qos = match qos {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtMostOnce,
    };
    client.publish(target.topic.clone(), qos, false, payload).await.map_err(|e| e.to_string())?;
    loop {
        match events.poll().await.map_err(|_| EgressError::Unreachable.to_string())? {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code != rumqttc::ConnectReturnCode::Success => {
                return Err(format!("the MQTT broker refused the connection: {:?}", ack.code))
            }
            Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => break,
            Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => break,
            _ => {}
        }
    }
    // The message is delivered; a disconnect that fails costs nothing but is told. Let the
    // disconnect leave; the broker drops the session either way.
    if let Err(e) = client.disconnect().await {
        tracing::debug!(error = %e, "the MQTT disconnect after a delivered notification failed");
    }
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(200), events.poll()).await {
        tracing::debug!(error = %e, "the MQTT connection after a delivered notification ended with an error");
    }
    Ok(())
}

async fn publish_v5(
    mut options: rumqttc::v5::MqttOptions,
    target: &MqttTarget,
    payload: Vec<u8>,
    qos: u8,
) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event};
    use rumqttc::Outgoing;
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(user) = &target.user {
        options.set_credentials(user.clone(), target.password.clone().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(options, 4);
    let qos = match qos {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtMostOnce,
    };
    client.publish(target.topic.clone(), qos, false, payload).await.map_err(|e| e.to_string())?;
    loop {
        match events.poll().await.map_err(|_| EgressError::Unreachable.to_string())? {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code != ConnectReturnCode::Success => {
                return Err(format!("the MQTT broker refused the connection: {:?}", ack.code))
            }
            Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => break,
            Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => break,
            _ => {}
        }
    }
    // The message is delivered; a disconnect that fails costs nothing but is told. Let the
    // disconnect leave; the broker drops the session either way.
    if let Err(e) = client.disconnect().await {
        tracing::debug!(error = %e, "the MQTT disconnect after a delivered notification failed");
    }
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(200), events.poll()).await {
        tracing::debug!(error = %e, "the MQTT connection after a delivered notification ended with an error");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_uris_give_host_port_credentials_and_topic() {
        assert_eq!(
            mqtt_target("mqtt://user:p%40ss@broker:1884/city/air").unwrap(),
            MqttTarget {
                host: "broker".into(),
                port: 1884,
                user: Some("user".into()),
                password: Some("p@ss".into()),
                topic: "city/air".into()
            }
        );
        let plain = mqtt_target("mqtt://127.0.0.1/t").unwrap();
        assert_eq!((plain.port, plain.user, plain.topic.as_str()), (1883, None, "t"));
        assert!(mqtt_target("mqtt://broker").is_err());
    }
}
