//! Spin's outbound services end to end, the way Spin's conformance suite
//! checks them: wasi:sockets TCP and outbound Redis, each served through the
//! gateway against a real server on 127.0.0.1, from the sdk5 component and
//! from the same guest built as a core module. Replies are compared as
//! strictly as the suite does: exact status and body, and no header the
//! test does not expect (hop-by-hop ones aside).

use crate::support::control::Redis;
use crate::support::{Gateway, Reply, get, one_component_manifest, toml_list};
use std::path::Path;

/// Headers the suite's runs tolerate on these replies (all optional), plus
/// the hop-by-hop `connection` and `keep-alive`.
const TOLERATED: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "date",
    "connection",
    "keep-alive",
];

/// Asserts `reply` is exactly (`status`, `body`) with no other headers.
fn assert_suite_reply(what: &str, reply: &Reply, status: u16, body: &str) {
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (status, body),
        "{what}"
    );
    let unexpected: Vec<&str> = reply
        .headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| !TOLERATED.contains(n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{what}: unexpected headers {unexpected:?}"
    );
}

/// The two builds of the test guest: component and core module.
const BUILDS: [(&str, &str); 2] = [
    ("component", test_programs::SDK5_GUEST),
    ("module", test_programs::SDK5_MODULE),
];

/// Writes a manifest serving `wasm` on every path as app `name`, with
/// `allowed_outbound_hosts` and `[variables]` lines; returns `host=path`.
fn app(dir: &Path, name: &str, wasm: &str, allowed: &[String], variables: &str) -> String {
    let keys = format!("allowed_outbound_hosts = {}", toml_list(allowed));
    let manifest = one_component_manifest(dir, name, wasm, variables, &keys);
    format!("{name}.localhost={manifest}")
}

/// A TCP server on 127.0.0.1 that echoes what it reads.
async fn tcp_echo() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// wasi:sockets TCP connects follow `allowed_outbound_hosts` as Spin reads
/// it for sockets (`*` or `tcp` schemes, addresses, CIDR networks, ports
/// and variables), and the operator's block list beats it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connects_follow_the_allow_list_and_the_block_list() {
    let port = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let allowed = [
        ("exact", format!("*://127.0.0.1:{port}"), ""),
        ("tcp-scheme", format!("tcp://127.0.0.1:{port}"), ""),
        ("cidr", format!("*://127.0.0.0/24:{port}"), ""),
        (
            "variables",
            format!("*://{{{{ addr_prefix }}}}/{{{{ prefix_len }}}}:{port}"),
            "addr_prefix = { default = \"127.0.0.0\" }\nprefix_len = { default = \"24\" }",
        ),
    ];
    let denied = [
        ("other-ip", format!("*://127.0.0.2:{port}")),
        (
            "other-port",
            format!("*://127.0.0.1:{}", port.wrapping_add(1)),
        ),
        ("other-scheme", format!("redis://127.0.0.1:{port}")),
        ("by-name", format!("*://localhost:{port}")),
    ];
    for (build, wasm) in BUILDS {
        let mut apps = Vec::new();
        for (name, entry, variables) in &allowed {
            apps.push(app(
                dir.path(),
                name,
                wasm,
                std::slice::from_ref(entry),
                variables,
            ));
        }
        for (name, entry) in &denied {
            apps.push(app(dir.path(), name, wasm, std::slice::from_ref(entry), ""));
        }
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        let path = format!("/tcp-echo?address=127.0.0.1:{port}&message=So-rested-he");
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none"]);
        for (name, ..) in &allowed {
            let reply = get(&gw, &format!("{name}.localhost"), &path).await;
            assert_suite_reply(&format!("{build} {name}"), &reply, 200, "So-rested-he");
        }
        for (name, _) in &denied {
            let reply = get(&gw, &format!("{name}.localhost"), &path).await;
            assert_suite_reply(
                &format!("{build} {name}"),
                &reply,
                500,
                "access-denied (error 1)",
            );
        }
        // Each socket is a descriptor: an instance gets 16, then the
        // interface's own error; a component with no tcp entry gets none.
        let reply = get(&gw, "exact.localhost", "/tcp-sockets?n=40").await;
        assert_eq!(
            reply.text(),
            "socket 17 refused: new-socket-limit (error 10)",
            "{build}"
        );
        let reply = get(&gw, "other-scheme.localhost", "/tcp-sockets?n=1").await;
        assert_eq!(
            reply.text(),
            "socket 1 refused: access-denied (error 1)",
            "{build}"
        );
        drop(gw);
        // With the default block list, loopback is out of reach whatever
        // the manifest allows.
        let gw = Gateway::start_apps(&apps, &[]);
        let reply = get(&gw, "exact.localhost", &path).await;
        assert_suite_reply(
            &format!("{build} blocked"),
            &reply,
            500,
            "access-denied (error 1)",
        );
    }
}

/// Outbound Redis behaves as Spin's suite expects: the whole command
/// sequence against a real server, `invalid-address` for an address the
/// manifest does not allow (also spelled differently), and the block list
/// still applies to an allowed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_redis_runs_spins_sequence_within_the_allow_list() {
    let redis = Redis::start();
    let port = redis.server.port;
    let dir = tempfile::tempdir().unwrap();
    let address = format!("redis://localhost:{port}");
    let walk = [
        "get Some(Ok(\"Eureka!\"))",
        "get missing None",
        "incr 1",
        "del 2",
        "sadd 2",
        "smembers [\"a\", \"b\"]",
        "srem 2",
        "execute get \"Eureka! I've got it!\"",
        "execute incrby [RedisResult::Int64(5)]",
        "execute ping [RedisResult::Status(\"PONG\")]",
        // Redis's own refusal, as the interface's `other`.
        "incr of text Err(\"Error::Other(\\\"ResponseError: value is not an integer or out of range\\\")\")",
        "huge reply refused true",
    ]
    .join("\n");
    for (build, wasm) in BUILDS {
        let apps = [
            app(
                dir.path(),
                "redis",
                wasm,
                std::slice::from_ref(&address),
                "",
            ),
            app(
                dir.path(),
                "redis-variable",
                wasm,
                &[format!("redis://{{{{ redis_host }}}}:{port}")],
                "redis_host = { default = \"localhost\" }",
            ),
            app(dir.path(), "redis-none", wasm, &[], ""),
            app(
                dir.path(),
                "redis-other-port",
                wasm,
                &[format!("redis://localhost:{}", port.wrapping_add(1))],
                "",
            ),
        ];
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none"]);
        for host in ["redis.localhost", "redis-variable.localhost"] {
            let reply = get(&gw, host, &format!("/redis-walk?address={address}")).await;
            assert_suite_reply(&format!("{build} {host}"), &reply, 200, &walk);
        }
        for (host, address) in [
            ("redis-none.localhost", address.clone()),
            ("redis-other-port.localhost", address.clone()),
            // The allowed host, spelled as its address: not what the
            // manifest lists.
            ("redis.localhost", format!("redis://127.0.0.1:{port}")),
        ] {
            let reply = get(&gw, host, &format!("/redis-walk?address={address}")).await;
            assert_suite_reply(
                &format!("{build} {host} {address}"),
                &reply,
                500,
                "Error::InvalidAddress",
            );
        }
        drop(gw);
        let gw = Gateway::start_apps(&apps, &[]);
        let reply = get(
            &gw,
            "redis.localhost",
            &format!("/redis-walk?address={address}"),
        )
        .await;
        assert_eq!(reply.status, 500, "{build}: {}", reply.text());
        // Refused, and without telling the tenant where the name points.
        assert!(
            reply.text().contains("blocked network") && !reply.text().contains("127.0.0.1"),
            "{build}: {}",
            reply.text()
        );
    }
}

/// Outbound MQTT publishes to a real broker (Mosquitto on 127.0.0.1:1883,
/// on a topic of the test's own) within the allow-list, and refuses an
/// address it does not list with the text Spin's suite expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mqtt_publishes_within_the_allow_list() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let id = format!(
        "{}-{}",
        std::process::id(),
        crate::support::free_port().port()
    );
    let topic = format!("okra-test/{id}");
    let (subscriber, mut events) = AsyncClient::new(
        MqttOptions::new(format!("okra-sub-{id}"), "127.0.0.1", 1883),
        10,
    );
    subscriber
        .subscribe(&topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) =
            events.poll().await.expect("Mosquitto on 127.0.0.1:1883")
        {
            break;
        }
    }
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for (build, wasm) in BUILDS {
        let apps = [
            app(
                dir.path(),
                "mqtt",
                wasm,
                &["mqtt://localhost:1883".into()],
                "",
            ),
            app(dir.path(), "mqtt-none", wasm, &[], ""),
        ];
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none"]);
        let address = format!("mqtt://localhost:1883?client_id=spintest-{build}-{id}");
        let publish = |host: &'static str, message: &str| {
            let path = format!(
                "/mqtt-publish?address={address}&username=user&password=password&topic={topic}&message={message}"
            );
            let gw = &gw;
            async move { get(gw, host, &path).await }
        };
        let reply = publish("mqtt.localhost", build).await;
        assert_suite_reply(build, &reply, 200, "published");
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), received.recv())
            .await
            .expect("the message never reached the subscriber");
        assert_eq!(got.as_deref(), Some(build));
        let reply = publish("mqtt-none.localhost", "never").await;
        assert_suite_reply(
            &format!("{build} denied"),
            &reply,
            500,
            &format!("Error::ConnectionFailed(\"address {address} is not permitted\")"),
        );
    }
    assert!(received.try_recv().is_err(), "a refused publish arrived");
}

/// Outbound PostgreSQL (`spin:postgres@4.0.0`) against the machine's
/// server: one guest connection is one backend session, every value type
/// of the interface goes in as a parameter and comes back as Spin maps it,
/// and a connection string the manifest does not allow is refused with
/// Spin's text. Only TEMP tables are used, so nothing outlives the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_postgres_maps_every_type_within_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let address = "host=localhost port=5432 user=postgres dbname=postgres";
    let walk = [
        "one backend true",
        "DbDataType::Boolean DbValue::Boolean(true)",
        "DbDataType::Int16 DbValue::Int16(-7)",
        "DbDataType::Int32 DbValue::Int32(42)",
        "DbDataType::Int64 DbValue::Int64(1099511627776)",
        "DbDataType::Floating32 DbValue::Floating32(1.5)",
        "DbDataType::Floating64 DbValue::Floating64(-2.25)",
        "DbDataType::Str DbValue::Str(\"héllo\")",
        "DbDataType::Str DbValue::Str(\"pad  \")",
        "DbDataType::Binary DbValue::Binary([0, 1, 255])",
        "DbDataType::Date DbValue::Date((2024, 2, 29))",
        "DbDataType::Time DbValue::Time((23, 59, 58, 123456000))",
        "DbDataType::Datetime DbValue::Datetime((1999, 12, 31, 23, 59, 59, 500000000))",
        "DbDataType::Uuid DbValue::Uuid(\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\")",
        "DbDataType::Jsonb DbValue::Jsonb([123, 34, 97, 34, 58, 91, 49, 44, 50, 93, 125])",
        "DbDataType::Decimal DbValue::Decimal(\"12345.6789\")",
        // Discrete ranges come back normalised, as PostgreSQL keeps them.
        "DbDataType::RangeInt32 DbValue::RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((6, RangeBoundKind::Exclusive))))",
        "DbDataType::RangeInt64 DbValue::RangeInt64((None, Some((9, RangeBoundKind::Exclusive))))",
        "DbDataType::RangeDecimal DbValue::RangeDecimal((Some((\"1.5\", RangeBoundKind::Exclusive)), None))",
        "DbDataType::ArrayInt32 DbValue::ArrayInt32([Some(1), None, Some(3)])",
        "DbDataType::ArrayInt64 DbValue::ArrayInt64([Some(-1)])",
        "DbDataType::ArrayDecimal DbValue::ArrayDecimal([Some(\"0.1\"), None])",
        "DbDataType::ArrayStr DbValue::ArrayStr([Some(\"x\"), None])",
        "DbDataType::Interval DbValue::Interval(Interval { micros: 1500000, days: 2, months: 3 })",
        "DbDataType::Int32 DbValue::DbNull",
        "5 in [1,5) DbValue::Boolean(false)",
        "tsvector DbDataType::Other(\"tsvector\") unsupported true",
        "multi-statement execute Err(\"Error::QueryFailed(QueryError::DbError(DbError { as-text: \\\"ERROR: cannot insert multiple commands into a prepared statement\\\", severity: \\\"ERROR\\\", code: \\\"42601\\\", message: \\\"cannot insert multiple commands into a prepared statement\\\", detail: None, extras: [] }))\")",
        "inserted 2",
        "empty result columns [\"n\"] rows 0",
        "missing table: 42P01 relation \"no_such_table\" does not exist",
        "bad parameter: parameter $1: 2023-2-30 is not a date",
    ]
    .join("\n");
    for (build, wasm) in BUILDS {
        let apps = [
            app(
                dir.path(),
                "pg",
                wasm,
                &["postgres://localhost:5432".into()],
                "",
            ),
            app(dir.path(), "pg-none", wasm, &[], ""),
        ];
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none", "--outbound-postgres"]);
        let path = format!("/pg-walk?address={}", address.replace(' ', "%20"));
        let reply = get(&gw, "pg.localhost", &path).await;
        assert_suite_reply(build, &reply, 200, &walk);
        let reply = get(&gw, "pg-none.localhost", &path).await;
        assert_suite_reply(
            &format!("{build} denied"),
            &reply,
            500,
            "Error::ConnectionFailed(\"address postgres://localhost:5432 is not permitted\")",
        );
        drop(gw);
        // The block list still applies, and the refusal names no address.
        let gw = Gateway::start_apps(&apps, &["--outbound-postgres"]);
        let reply = get(&gw, "pg.localhost", &path).await;
        assert_eq!(reply.status, 500, "{build}: {}", reply.text());
        assert!(
            reply.text().contains("blocked network") && !reply.text().contains("127.0.0.1"),
            "{build}: {}",
            reply.text()
        );
        drop(gw);
        // Without the operator's --outbound-postgres, no session opens.
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none"]);
        let reply = get(&gw, "pg.localhost", &path).await;
        assert_eq!(reply.status, 500, "{build}: {}", reply.text());
        assert!(
            reply.text().contains("--outbound-postgres"),
            "{build}: {}",
            reply.text()
        );
    }
}

/// The older `fermyon:spin/postgres@2.0.0` (spin-sdk's `pg`) over the same
/// sessions: its value set, `unsupported` for the rest, and the same
/// allow-list refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_postgres_2_serves_the_older_value_set() {
    let dir = tempfile::tempdir().unwrap();
    let address = "host=localhost port=5432 user=postgres dbname=postgres";
    let path = format!("/pg2-walk?address={}", address.replace(' ', "%20"));
    let walk = [
        "n DbDataType::Int32 DbValue::Int32(42)",
        "s DbDataType::Str DbValue::Str(\"x\")",
        "b DbDataType::Binary DbValue::Binary([1, 2])",
        "f DbDataType::Boolean DbValue::Boolean(true)",
        "z DbDataType::Int64 DbValue::DbNull",
        "d DbDataType::Other DbValue::Unsupported",
        "execute Ok(3)",
        "bad sql Err(Error::QueryFailed(\"ERROR: syntax error at or near \\\"SELEC\\\"\"))",
    ]
    .join("\n");
    for (build, wasm) in BUILDS {
        let apps = [
            app(
                dir.path(),
                "pg",
                wasm,
                &["postgres://localhost:5432".into()],
                "",
            ),
            app(dir.path(), "pg-none", wasm, &[], ""),
        ];
        let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
        let gw = Gateway::start_apps(&apps, &["--block-networks", "none", "--outbound-postgres"]);
        let reply = get(&gw, "pg.localhost", &path).await;
        assert_suite_reply(build, &reply, 200, &walk);
        let reply = get(&gw, "pg-none.localhost", &path).await;
        assert_suite_reply(
            &format!("{build} denied"),
            &reply,
            500,
            "Error::ConnectionFailed(\"address postgres://localhost:5432 is not permitted\")",
        );
    }
}
