//! Outbound MQTT for guests, `fermyon:spin/mqtt@2.0.0`, as Spin serves it:
//! `open` takes `mqtt://host[:port]?client_id=ID`, checks it against
//! `allowed_outbound_hosts` (refused: `connection-failed("address … is not
//! permitted")`, the text Spin's suite expects), then passes the tenant's
//! service gate (blocked networks, connection cap). The guest's username,
//! password and keep-alive override the URL's. The broker is dialled at the
//! first `publish`, which returns once the broker has acknowledged the
//! message as its QoS requires (written; PUBACK; PUBCOMP).

use crate::guest::state::GuestState;
use crate::outbound::{ConnectError, ServiceRefusal};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{HasSelf, Linker, Resource};

wasmtime::component::bindgen!({
    inline: "
        package fermyon:spin@2.0.0;

        interface mqtt {
            variant error {
                invalid-address,
                too-many-connections,
                connection-failed(string),
                other(string),
            }
            enum qos {
                at-most-once,
                at-least-once,
                exactly-once,
            }
            resource connection {
                open: static func(address: string, username: string, password: string, keep-alive-interval-in-secs: u64) -> result<connection, error>;
                publish: func(topic: string, payload: payload, qos: qos) -> result<_, error>;
            }
            type payload = list<u8>;
        }

        world mqtt-host {
            import mqtt;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/mqtt.connection": MqttConnection,
    },
});

use fermyon::spin::mqtt::{Error, Host, HostConnection, Qos};

/// The import this module serves.
const INTERFACE: &str = "fermyon:spin/mqtt@2.0.0";

/// How long a publish may wait for the broker (connecting included).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest MQTT packet sent or accepted.
const MAX_PACKET_BYTES: usize = 1 << 20;
/// Bytes a PUBLISH packet takes besides its topic and payload (at most).
const PUBLISH_OVERHEAD: usize = 16;
/// Requests queued to the connection's event loop.
const QUEUE: usize = 16;

/// True when `interface` (an import name, with version) is served here.
pub(crate) fn provides(interface: &str) -> bool {
    interface == INTERFACE
}

/// Links the MQTT interface.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    fermyon::spin::mqtt::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
}

/// A connection a guest opened, with the tenant's connection permit it holds.
#[expect(
    unreachable_pub,
    reason = "bindgen! re-exports the resource's type from the module it generates"
)]
pub struct MqttConnection {
    client: AsyncClient,
    events: EventLoop,
    _permit: OwnedSemaphorePermit,
}

/// The broker an address names: `mqtt://` or `tcp://host[:port]` with a
/// non-empty `client_id` in its query (other query keys are ignored).
/// Parsed here rather than by rumqttc, whose URL options can panic.
fn broker(address: &str) -> Option<Broker> {
    let url = url::Url::parse(address).ok()?;
    if !matches!(url.scheme(), "mqtt" | "tcp") {
        return None;
    }
    let host = url.host()?.to_string();
    let port = url.port().unwrap_or(1883);
    let client_id = url
        .query_pairs()
        .find(|(key, _)| key == "client_id")?
        .1
        .into_owned();
    (!client_id.is_empty() && client_id.len() <= 256).then_some(Broker {
        client_id,
        url: format!("mqtt://{host}:{port}"),
    })
}

/// What `open` needs of a broker address.
struct Broker {
    client_id: String,
    /// `mqtt://host:port`, for the service gate.
    url: String,
}

/// The options for a broker at vetted address `at`, with the guest's
/// client id, credentials and keep-alive.
fn options(
    client_id: String,
    at: SocketAddr,
    username: String,
    password: String,
    keep_alive_secs: u64,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, at.ip().to_string(), at.port());
    options
        .set_credentials(username, password)
        .set_keep_alive(Duration::from_secs(
            keep_alive_secs.min(u64::from(u16::MAX)),
        ))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options
}

impl Host for GuestState {}

impl HostConnection for GuestState {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Error>> {
        let outbound = self.hooks.component.clone();
        if !outbound.allows_service(&address, "mqtt") {
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {address} is not permitted"
            ))));
        }
        let Some(broker) = broker(&address) else {
            return Ok(Err(Error::InvalidAddress));
        };
        let grant = match outbound.open_service(&broker.url, "mqtt").await {
            Ok(grant) => grant,
            Err(ServiceRefusal::Unreachable(ConnectError::LimitReached(_))) => {
                return Ok(Err(Error::TooManyConnections));
            }
            Err(ServiceRefusal::BadAddress(_)) => return Ok(Err(Error::InvalidAddress)),
            Err(e) => return Ok(Err(Error::ConnectionFailed(e.for_guest()))),
        };
        let options = options(
            broker.client_id,
            grant.addresses[0],
            username,
            password,
            keep_alive_interval_in_secs,
        );
        let (client, mut events) = AsyncClient::new(options, QUEUE);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(grant.connect_timeout.as_secs().max(1));
        events.set_network_options(network);
        Ok(Ok(self.table.push(MqttConnection {
            client,
            events,
            _permit: grant.permit,
        })?))
    }

    async fn publish(
        &mut self,
        connection: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        let connection = self.table.get_mut(&connection)?;
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        // Refused here rather than left queued: rumqttc would resend an
        // oversized packet at every reconnect.
        if payload.len() + topic.len() + PUBLISH_OVERHEAD > MAX_PACKET_BYTES {
            return Ok(Err(Error::Other(format!(
                "a message of {} bytes is over the {MAX_PACKET_BYTES}-byte packet limit",
                payload.len()
            ))));
        }
        if let Err(e) = connection.client.try_publish(topic, qos, false, payload) {
            return Ok(Err(Error::Other(e.to_string())));
        }
        // Wait for this publish to go out, then for the acknowledgement
        // of its packet id (not just any).
        let acknowledged = async {
            let mut sent = None;
            loop {
                match (connection.events.poll().await, sent) {
                    (Ok(Event::Outgoing(Outgoing::Publish(id))), None) => {
                        if qos == QoS::AtMostOnce {
                            return Ok(());
                        }
                        sent = Some(id);
                    }
                    (Ok(Event::Incoming(Packet::PubAck(ack))), Some(id))
                        if qos == QoS::AtLeastOnce && ack.pkid == id =>
                    {
                        return Ok(());
                    }
                    (Ok(Event::Incoming(Packet::PubComp(done))), Some(id))
                        if qos == QoS::ExactlyOnce && done.pkid == id =>
                    {
                        return Ok(());
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => return Err(Error::ConnectionFailed(e.to_string())),
                }
            }
        };
        Ok(tokio::time::timeout(PUBLISH_TIMEOUT, acknowledged)
            .await
            .unwrap_or_else(|_| {
                Err(Error::ConnectionFailed(format!(
                    "the broker did not acknowledge within {PUBLISH_TIMEOUT:?}"
                )))
            }))
    }

    async fn drop(&mut self, connection: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse_without_rumqttc_and_never_panic() {
        let b = broker("mqtt://localhost:1884?client_id=spin&keep_alive_secs=5").unwrap();
        assert_eq!(
            (b.client_id.as_str(), b.url.as_str()),
            ("spin", "mqtt://localhost:1884")
        );
        assert_eq!(
            broker("tcp://[::1]?client_id=x").unwrap().url,
            "mqtt://[::1]:1883"
        );
        // What made rumqttc's own parser panic is just ignored here.
        assert!(broker("mqtt://h?client_id=x&clean_session=false&inflight_num=0").is_some());
        for bad in [
            "mqtt://h",
            "mqtt://h?client_id=",
            "mqtts://h?client_id=x",
            "http://h?client_id=x",
            "not a url",
        ] {
            assert!(broker(bad).is_none(), "{bad}");
        }
    }
}
