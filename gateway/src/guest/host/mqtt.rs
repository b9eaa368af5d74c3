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

/// The options for a broker at vetted address `broker`, from the guest's
/// URL (its client id) and its credentials and keep-alive.
fn options(
    url: &MqttOptions,
    broker: SocketAddr,
    username: String,
    password: String,
    keep_alive_secs: u64,
) -> MqttOptions {
    let mut options = MqttOptions::new(url.client_id(), broker.ip().to_string(), broker.port());
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
        let Ok(url) = MqttOptions::parse_url(address.as_str()) else {
            return Ok(Err(Error::InvalidAddress));
        };
        let grant = match outbound.open_service(&address, "mqtt").await {
            Ok(grant) => grant,
            Err(ServiceRefusal::Unreachable(ConnectError::LimitReached(_))) => {
                return Ok(Err(Error::TooManyConnections));
            }
            Err(ServiceRefusal::BadAddress(_)) => return Ok(Err(Error::InvalidAddress)),
            Err(e) => return Ok(Err(Error::ConnectionFailed(e.to_string()))),
        };
        let options = options(
            &url,
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
        if let Err(e) = connection.client.try_publish(topic, qos, false, payload) {
            return Ok(Err(Error::Other(e.to_string())));
        }
        let acknowledged = async {
            loop {
                match connection.events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                        return Ok(());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) if qos == QoS::AtLeastOnce => {
                        return Ok(());
                    }
                    Ok(Event::Incoming(Packet::PubComp(_))) if qos == QoS::ExactlyOnce => {
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Error::ConnectionFailed(e.to_string())),
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
