//! A spin-sdk 5 (wasi:http 0.2) component whose path picks a behaviour:
//! `/hello`, `/echo` (streams the body back with method, path and headers),
//! `/headers`, `/download?bytes=N` (streamed, no length), `/upload` (counts a
//! streamed body), `/counter`, `/memory-probe`, `/file?path=P` (read, then try
//! to write), `/connect?addr=A`, `/fetch?method=M&h=name:value&connect_ms=..&first_byte_ms=..&between_ms=..&url=U`
//! (an outbound request with those headers and request options; a URL that
//! starts with `/` is sent relative, as spin-sdk 5's own `Request` sends it),
//! `/variable?name=N` (fermyon:spin/variables), `/config?name=N` and
//! `/config-all` (wasi:config/store), `/kv`, `/kv-walk` (Spin's key-value
//! semantics step by step), `/kv-get?store=S&key=K`, `/kv-set?store=S&key=K&value=V`, `/no-body`, `/llm`, `/status?code=N`, `/print`,
//! `/tcp-echo?address=A&message=M` (wasi:sockets TCP, as Spin's suite
//! does it: 200 with the echo, or 500 with the socket error),
//! `/tcp-sockets?n=N` (creates N sockets, reporting the first refusal),
//! `/redis-walk?address=A` (outbound Redis, the suite's sequence; 500 with
//! the error), `/sqlite-walk?value=V` (SQLite, the suite's sequence on
//! "default", storing V), `/mqtt-publish?address=A&username=U&password=P&topic=T&message=M`
//! (QoS at-least-once; 500 with the error), wasi:keyvalue's `/wkv-walk`
//! (store, batch and atomics semantics), `/wkv-incr?key=K&delta=D` and
//! `/wkv-append?key=K&text=T` (a compare-and-swap loop), `/pg-walk?address=A`
//! (spin:postgres@4.0.0: one session, every value type both ways, a
//! server error; 500 with the error), and the hostile
//! `/loop`, `/alloc` and `/panic`.

use futures::{SinkExt, StreamExt};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

/// Spin's key-value semantics, step by step on a fresh "default" store:
/// an unlisted store is refused, then missing keys, set, overwrite, keys
/// and deletes (twice) behave as Spin's conformance suite expects.
fn kv_walk() -> Result<String, spin_sdk::key_value::Error> {
    use spin_sdk::key_value::{Error, Store};
    let mut steps = Vec::new();
    match Store::open("forbidden") {
        Err(Error::AccessDenied) => steps.push("forbidden: access-denied".to_string()),
        other => steps.push(format!("forbidden: {:?}", other.map(|_| "opened"))),
    }
    let store = Store::open_default()?;
    store.delete("bar")?;
    steps.push(format!("exists {}", store.exists("bar")?));
    steps.push(format!("get {:?}", store.get("bar")?));
    steps.push(format!("keys {:?}", store.get_keys()?));
    store.set("bar", b"baz")?;
    steps.push(format!(
        "get {:?}",
        store.get("bar")?.map(String::from_utf8)
    ));
    store.set("bar", b"wow")?;
    store.set("qux", b"yay")?;
    steps.push(format!("exists {}", store.exists("bar")?));
    steps.push(format!("keys {:?}", store.get_keys()?));
    store.delete("bar")?;
    store.delete("bar")?;
    store.delete("qux")?;
    steps.push(format!("keys {:?}", store.get_keys()?));
    Ok(steps.join("\n"))
}

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let full = req.path_with_query().unwrap_or_default();
    let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
    let path = path
        .rsplit_once("/t/")
        .map_or(path, |(_, rest)| rest)
        .trim_matches('/');
    match path {
        "hello" | "" => respond(out, 200, &[], b"Hello from spin-sdk 5\n".to_vec()).await,
        "headers" => {
            let entries = req.headers().entries();
            let body = guest_common::render_headers(
                entries.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            );
            respond(out, 200, &[], body.into_bytes()).await
        }
        "echo" => {
            let entries = req.headers().entries();
            let mut headers = vec![
                (
                    "x-echo-method".to_string(),
                    req.method().to_string().into_bytes(),
                ),
                ("x-echo-path".to_string(), full.clone().into_bytes()),
            ];
            if let Some((_, ct)) = entries.iter().find(|(n, _)| n == "content-type") {
                headers.push(("content-type".into(), ct.clone()));
            }
            let response = OutgoingResponse::new(fields(&headers));
            let mut sink = response.take_body();
            out.set(response);
            let mut stream = req.into_body_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                if sink.send(chunk).await.is_err() {
                    break;
                }
            }
        }
        "download" => {
            let mut remaining = guest_common::bytes_param(query);
            let response = OutgoingResponse::new(Fields::new());
            let mut sink = response.take_body();
            out.set(response);
            while remaining > 0 {
                let n = remaining.min(64 * 1024);
                if sink.send(vec![b'x'; n]).await.is_err() {
                    break;
                }
                remaining -= n;
            }
        }
        "upload" => {
            let mut total = 0usize;
            let mut stream = req.into_body_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                total += chunk.len();
            }
            respond(out, 200, &[], total.to_string().into_bytes()).await
        }
        "counter" => {
            respond(
                out,
                200,
                &[],
                guest_common::count_request().to_string().into_bytes(),
            )
            .await
        }
        "memory-probe" => respond(out, 200, &[], guest_common::memory_probe().into_bytes()).await,
        "kv" => {
            let text = match spin_sdk::key_value::Store::open_default() {
                Ok(_) => "opened".to_string(),
                Err(e) => format!("error: {e:?}"),
            };
            respond(out, 200, &[], text.into_bytes()).await
        }
        "kv-walk" => {
            let text = kv_walk().unwrap_or_else(|e| format!("error: {e:?}"));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "kv-get" | "kv-set" => {
            use spin_sdk::key_value::Store;
            let key = guest_common::param(query, "key");
            let result = Store::open(guest_common::param(query, "store")).and_then(|store| {
                if path == "kv-set" {
                    store
                        .set(key, guest_common::param(query, "value").as_bytes())
                        .map(|()| "set".to_string())
                } else {
                    store.get(key).map(|value| match value {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None => "<none>".to_string(),
                    })
                }
            });
            let text = result.unwrap_or_else(|e| format!("error: {e:?}"));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "llm" => {
            let text = match spin_sdk::llm::infer(spin_sdk::llm::InferencingModel::Llama2Chat, "hi")
            {
                Ok(_) => "inferred".to_string(),
                Err(e) => format!("error: {e:?}"),
            };
            respond(out, 200, &[], text.into_bytes()).await
        }
        "file" => {
            let text = guest_common::file_probe(query);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "connect" => {
            let text = guest_common::connect_probe(query);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "tcp-sockets" => {
            use wasi::sockets::network::IpAddressFamily;
            use wasi::sockets::tcp_create_socket::create_tcp_socket;
            let n: usize = guest_common::param(query, "n").parse().unwrap_or(1);
            let mut held = Vec::new();
            let mut report = format!("created {n}");
            for i in 1..=n {
                match create_tcp_socket(IpAddressFamily::Ipv4) {
                    Ok(socket) => held.push(socket),
                    Err(e) => {
                        report = format!("socket {i} refused: {e}");
                        break;
                    }
                }
            }
            respond(out, 200, &[], report.into_bytes()).await
        }
        "tcp-echo" => {
            let address = guest_common::param(query, "address");
            let message = guest_common::param(query, "message");
            match tcp_echo(address, message) {
                Ok(echo) => respond(out, 200, &[], echo.into_bytes()).await,
                Err(e) => respond(out, 500, &[], e.into_bytes()).await,
            }
        }
        "sqlite-walk" => match sqlite_walk(guest_common::param(query, "value")) {
            Ok(report) => respond(out, 200, &[], report.into_bytes()).await,
            Err(e) => respond(out, 500, &[], e.into_bytes()).await,
        },
        "mqtt-publish" => {
            use spin_sdk::mqtt::{Connection, Qos};
            let p = |name| guest_common::param(query, name);
            let published = Connection::open(p("address"), p("username"), p("password"), 30)
                .and_then(|c| {
                    c.publish(
                        p("topic"),
                        p("message").as_bytes(),
                        Qos::AtLeastOnce,
                    )
                });
            match published {
                Ok(()) => respond(out, 200, &[], b"published".to_vec()).await,
                Err(e) => respond(out, 500, &[], e.to_string().into_bytes()).await,
            }
        }
        "wkv-walk" | "wkv-incr" | "wkv-append" => {
            let result = match path {
                "wkv-walk" => wasi_kv_walk(),
                "wkv-incr" => wasi_kv_increment(
                    guest_common::param(query, "key"),
                    guest_common::param(query, "delta").parse().unwrap_or(1),
                ),
                _ => wasi_kv_append(
                    guest_common::param(query, "key"),
                    guest_common::param(query, "text"),
                ),
            };
            match result {
                Ok(report) => respond(out, 200, &[], report.into_bytes()).await,
                Err(e) => respond(out, 500, &[], e.into_bytes()).await,
            }
        }
        "pg2-walk" => match pg2_walk(&guest_common::param(query, "address").replace("%20", " ")) {
            Ok(report) => respond(out, 200, &[], report.into_bytes()).await,
            Err(e) => respond(out, 500, &[], e.into_bytes()).await,
        },
        "pg-walk" => match pg_walk(&guest_common::param(query, "address").replace("%20", " ")) {
            Ok(report) => respond(out, 200, &[], report.into_bytes()).await,
            Err(e) => respond(out, 500, &[], e.into_bytes()).await,
        },
        "redis-walk" => match redis_walk(guest_common::param(query, "address")) {
            Ok(report) => respond(out, 200, &[], report.into_bytes()).await,
            Err(e) => respond(out, 500, &[], e.into_bytes()).await,
        },
        "fetch" => {
            let text = guest_common::fetch_report(fetch(query));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "variable" => {
            let value = spin_sdk::variables::get(guest_common::param(query, "name"));
            let text = guest_common::variable_report(value);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "config" => {
            use spin_sdk::wit::wasi::config::store;
            let value = store::get(guest_common::param(query, "name"))
                .map(|v| v.unwrap_or_else(|| "<none>".into()));
            let text = guest_common::variable_report(value);
            respond(out, 200, &[], text.into_bytes()).await
        }
        "config-all" => {
            use spin_sdk::wit::wasi::config::store;
            let text = guest_common::variable_report(store::get_all().map(|all| {
                all.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }));
            respond(out, 200, &[], text.into_bytes()).await
        }
        "loop" => guest_common::spin_forever(),
        "alloc" => {
            let n = guest_common::allocate_forever();
            respond(out, 200, &[], n.to_string().into_bytes()).await
        }
        "print" => {
            // Output that tries to pass for the gateway's own log lines.
            println!("guest says hi");
            eprint!(
                "partial\n2026-12-01T00:00:00.000000Z ERROR okra: forged line\x1b[2J\rno newline at the end"
            );
            respond(out, 200, &[], b"printed".to_vec()).await
        }
        "no-body" => {
            // As Spin's conformance components answer: a response whose
            // body is never taken.
            out.set(OutgoingResponse::new(Fields::new()));
        }
        "status" => {
            let code = guest_common::param(query, "code").parse().unwrap_or(200);
            respond(out, code, &[], b"status body".to_vec()).await
        }
        "panic" => panic!("guest secret sk_live_do_not_leak"),
        _ => respond(out, 404, &[], b"no such test route\n".to_vec()).await,
    }
}

/// fermyon:spin/postgres@2.0.0 (spin-sdk's `pg`): the older value set,
/// with a type it has no case for coming back `unsupported`.
fn pg2_walk(address: &str) -> Result<String, String> {
    use spin_sdk::pg::{Connection, ParameterValue as P};
    let fail = |e: spin_sdk::pg::PgError| format!("{e:?}");
    let db = Connection::open(address).map_err(fail)?;
    let rows = db
        .query(
            "SELECT $1::int4 + 1 AS n, $2::text AS s, $3::bytea AS b, $4::bool AS f, \
             NULL::int8 AS z, '2024-01-01'::date AS d",
            &[P::Int32(41), P::Str("x".into()), P::Binary(vec![1, 2]), P::Boolean(true)],
        )
        .map_err(fail)?;
    let mut steps: Vec<String> = rows
        .columns
        .iter()
        .zip(&rows.rows[0])
        .map(|(c, v)| format!("{} {:?} {v:?}", c.name, c.data_type))
        .collect();
    steps.push(format!(
        "execute {:?}",
        db.execute("SELECT 1 FROM generate_series(1, 3)", &[])
    ));
    steps.push(format!("bad sql {:?}", db.query("SELEC 1", &[]).map(|_| ())));
    Ok(steps.join("\n"))
}

/// spin:postgres@4.0.0 as Spin's suite uses it: the session is one backend,
/// each value type goes in as a parameter and comes back, ranges and
/// arrays work in SQL, and a server error carries its code.
fn pg_walk(address: &str) -> Result<String, String> {
    use spin_sdk::pg4::{Connection, DbValue, ParameterValue as P, RangeBoundKind as K};
    let fail = |e: spin_sdk::pg4::PgError| format!("{e:?}");
    let db = Connection::open(address).map_err(fail)?;
    let pid = |db: &Connection| {
        db.query("SELECT pg_backend_pid()", &[])
            .map(|r| format!("{:?}", r.rows))
    };
    let mut steps = vec![format!("one backend {}", pid(&db).map_err(fail)? == pid(&db).map_err(fail)?)];
    let params = [
        P::Boolean(true),
        P::Int16(-7),
        P::Int32(42),
        P::Int64(1 << 40),
        P::Floating32(1.5),
        P::Floating64(-2.25),
        P::Str("héllo".into()),
        P::Str("pad".into()),
        P::Binary(vec![0, 1, 255]),
        P::Date((2024, 2, 29)),
        P::Time((23, 59, 58, 123_456_000)),
        P::Datetime((1999, 12, 31, 23, 59, 59, 500_000_000)),
        P::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        P::Jsonb(br#"{"a":[1,2]}"#.to_vec()),
        P::Decimal("12345.6789".into()),
        P::RangeInt32((Some((1, K::Inclusive)), Some((5, K::Inclusive)))),
        P::RangeInt64((None, Some((9, K::Exclusive)))),
        P::RangeDecimal((Some(("1.5".into(), K::Exclusive)), None)),
        P::ArrayInt32(vec![Some(1), None, Some(3)]),
        P::ArrayInt64(vec![Some(-1)]),
        P::ArrayDecimal(vec![Some("0.1".into()), None]),
        P::ArrayStr(vec![Some("x".into()), None]),
        P::Interval(spin_sdk::pg4::Interval { micros: 1_500_000, days: 2, months: 3 }),
        P::DbNull,
    ];
    let casts = [
        "bool", "int2", "int4", "int8", "float4", "float8", "text", "char(5)", "bytea", "date",
        "time", "timestamp", "uuid", "jsonb", "numeric", "int4range", "int8range", "numrange",
        "int4[]", "int8[]", "numeric[]", "text[]", "interval", "int4",
    ];
    let select: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| format!("${}::{cast} AS c{i}", i + 1))
        .collect();
    let rows = db
        .query(&format!("SELECT {}", select.join(", ")), &params)
        .map_err(fail)?;
    for (column, value) in rows.columns.iter().zip(&rows.rows[0]) {
        steps.push(format!("{:?} {value:?}", column.data_type));
    }
    let contained = db
        .query(
            "SELECT $1::int4 <@ $2::int4range",
            &[P::Int32(5), P::RangeInt32((Some((1, K::Inclusive)), Some((5, K::Exclusive))))],
        )
        .map_err(fail)?;
    steps.push(format!("5 in [1,5) {:?}", contained.rows[0][0]));
    let unsupported = db.query("SELECT 'a:1'::tsvector", &[]).map_err(fail)?;
    steps.push(format!(
        "tsvector {:?} unsupported {}",
        unsupported.columns[0].data_type,
        matches!(unsupported.rows[0][0], DbValue::Unsupported(_))
    ));
    let changed = db
        .execute("CREATE TEMP TABLE walk (n int4); INSERT INTO walk VALUES (1), (2)", &[])
        .map_err(fail);
    steps.push(format!("multi-statement execute {changed:?}"));
    db.execute("CREATE TEMP TABLE walk (n int4)", &[]).map_err(fail)?;
    let inserted = db
        .execute("INSERT INTO walk VALUES ($1), ($2)", &[P::Int32(1), P::DbNull])
        .map_err(fail)?;
    steps.push(format!("inserted {inserted}"));
    let empty = db.query("SELECT n FROM walk WHERE n > 10", &[]).map_err(fail)?;
    steps.push(format!("empty result columns {:?} rows {}", empty.columns.iter().map(|c| &c.name).collect::<Vec<_>>(), empty.rows.len()));
    match db.query("SELECT * FROM no_such_table", &[]) {
        Err(spin_sdk::pg4::PgError::QueryFailed(spin_sdk::pg4::QueryError::DbError(e))) => {
            steps.push(format!("missing table: {} {}", e.code, e.message))
        }
        other => steps.push(format!("missing table: {other:?}")),
    }
    match db.query("SELECT $1::date", &[P::Date((2023, 2, 30))]) {
        Err(spin_sdk::pg4::PgError::BadParameter(e)) => steps.push(format!("bad parameter: {e}")),
        other => steps.push(format!("bad parameter: {other:?}")),
    }
    Ok(steps.join("\n"))
}

/// wasi:keyvalue's semantics on "default", step by step.
fn wasi_kv_walk() -> Result<String, String> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let fail = |e: store::Error| format!("{e:?}");
    let mut steps = Vec::new();
    match store::open("forbidden") {
        Err(store::Error::AccessDenied) => steps.push("forbidden: access-denied".to_string()),
        Err(e) => steps.push(format!("forbidden: {e:?}")),
        Ok(_) => steps.push("forbidden: opened".to_string()),
    }
    let bucket = store::open("default").map_err(fail)?;
    batch::delete_many(&bucket, &bucket.list_keys(None).map_err(fail)?.keys).map_err(fail)?;
    bucket.set("a", b"1").map_err(fail)?;
    batch::set_many(
        &bucket,
        &[("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())],
    )
    .map_err(fail)?;
    let listed = bucket.list_keys(None).map_err(fail)?;
    steps.push(format!("keys {:?} cursor {:?}", listed.keys, listed.cursor));
    let many = batch::get_many(&bucket, &["a".into(), "zz".into()]).map_err(fail)?;
    steps.push(format!("get-many {many:?}"));
    steps.push(format!(
        "exists a {} zz {}",
        bucket.exists("a").map_err(fail)?,
        bucket.exists("zz").map_err(fail)?
    ));
    steps.push(format!(
        "increment {}",
        atomics::increment(&bucket, "n", 5).map_err(fail)?
    ));
    steps.push(format!(
        "increment {}",
        atomics::increment(&bucket, "n", -2).map_err(fail)?
    ));
    steps.push(format!(
        "increment text {:?}",
        atomics::increment(&bucket, "a", 1)
    ));
    let cas = atomics::Cas::new(&bucket, "a").map_err(fail)?;
    steps.push(format!("cas current {:?}", cas.current().map_err(fail)?));
    bucket.set("a", b"changed").map_err(fail)?;
    match atomics::swap(cas, b"mine") {
        Err(atomics::CasError::CasFailed(fresh)) => {
            steps.push(format!(
                "swap over a stale value: cas-failed, now {:?}",
                fresh.current().map_err(fail)?
            ));
            atomics::swap(fresh, b"mine").map_err(|e| format!("{e:?}"))?;
            steps.push(format!("swap again: {:?}", bucket.get("a").map_err(fail)?));
        }
        other => steps.push(format!("swap over a stale value: {other:?}")),
    }
    batch::delete_many(&bucket, &["a".into(), "b".into(), "c".into(), "n".into()]).map_err(fail)?;
    steps.push(format!(
        "keys {:?}",
        bucket.list_keys(None).map_err(fail)?.keys
    ));
    Ok(steps.join("\n"))
}

/// Adds `delta` to counter `key` of "default" with wasi:keyvalue's atomics.
fn wasi_kv_increment(key: &str, delta: i64) -> Result<String, String> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, store};
    let bucket = store::open("default").map_err(|e| format!("{e:?}"))?;
    atomics::increment(&bucket, key, delta)
        .map(|n| n.to_string())
        .map_err(|e| format!("{e:?}"))
}

/// Appends `text` to `key` of "default" with a compare-and-swap loop.
fn wasi_kv_append(key: &str, text: &str) -> Result<String, String> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, store};
    let bucket = store::open("default").map_err(|e| format!("{e:?}"))?;
    let mut cas = atomics::Cas::new(&bucket, key).map_err(|e| format!("{e:?}"))?;
    for attempt in 1..=1000 {
        let mut value = cas
            .current()
            .map_err(|e| format!("{e:?}"))?
            .unwrap_or_default();
        value.extend_from_slice(text.as_bytes());
        match atomics::swap(cas, &value) {
            Ok(()) => return Ok(format!("appended after {attempt} attempts")),
            Err(atomics::CasError::CasFailed(fresh)) => cas = fresh,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Err("gave up after 1000 attempts".into())
}

/// What Spin's conformance component does with SQLite: "forbidden" is
/// refused, then a table on "default" gets a row with `value` and reads it
/// back; the report lists every row the table holds.
fn sqlite_walk(value: &str) -> Result<String, String> {
    use spin_sdk::sqlite::{Connection, Error, Value};
    let mut steps = Vec::new();
    match Connection::open("forbidden") {
        Err(Error::AccessDenied) => steps.push("forbidden: access-denied".to_string()),
        Err(e) => steps.push(format!("forbidden: {e:?}")),
        Ok(_) => steps.push("forbidden: opened".to_string()),
    }
    let fail = |e: Error| e.to_string();
    let db = Connection::open_default().map_err(fail)?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS test_data(key TEXT NOT NULL, value TEXT NOT NULL)",
        &[],
    )
    .map_err(fail)?;
    db.execute(
        "INSERT INTO test_data(key, value) VALUES('my_key', ?)",
        &[Value::Text(value.to_string())],
    )
    .map_err(fail)?;
    let result = db
        .execute(
            "SELECT * FROM test_data WHERE key = ?",
            &[Value::Text("my_key".to_string())],
        )
        .map_err(fail)?;
    steps.push(format!("columns {:?}", result.columns));
    for row in &result.rows {
        steps.push(format!("row {:?}", row.values));
    }
    Ok(steps.join("\n"))
}

/// What Spin's conformance component does with outbound Redis, reported
/// step by step; an error is the interface's own (`Error::InvalidAddress`).
fn redis_walk(address: &str) -> Result<String, String> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let fail = |e: spin_sdk::redis::Error| e.to_string();
    let connection = Connection::open(address).map_err(fail)?;
    let mut steps = Vec::new();
    connection
        .set("spin-example-get-set", b"Eureka!")
        .map_err(fail)?;
    let got = connection.get("spin-example-get-set").map_err(fail)?;
    steps.push(format!("get {:?}", got.map(String::from_utf8)));
    steps.push(format!(
        "get missing {:?}",
        connection.get("spin-example-missing").map_err(fail)?
    ));
    connection
        .set("spin-example-incr", b"0")
        .map_err(fail)?;
    steps.push(format!(
        "incr {}",
        connection.incr("spin-example-incr").map_err(fail)?
    ));
    let deleted = connection
        .del(&["spin-example-get-set".into(), "spin-example-incr".into()])
        .map_err(fail)?;
    steps.push(format!("del {deleted}"));
    steps.push(format!(
        "sadd {}",
        connection
            .sadd("spin-example-set", &["a".into(), "b".into()])
            .map_err(fail)?
    ));
    let mut members = connection.smembers("spin-example-set").map_err(fail)?;
    members.sort();
    steps.push(format!("smembers {members:?}"));
    steps.push(format!(
        "srem {}",
        connection
            .srem("spin-example-set", &["a".into(), "b".into()])
            .map_err(fail)?
    ));
    let key = || RedisParameter::Binary(b"spin-example".to_vec());
    connection
        .execute("set", &[key(), RedisParameter::Binary(b"Eureka!".to_vec())])
        .map_err(fail)?;
    connection
        .execute(
            "append",
            &[key(), RedisParameter::Binary(b" I've got it!".to_vec())],
        )
        .map_err(fail)?;
    let values = connection.execute("get", &[key()]).map_err(fail)?;
    match values.as_slice() {
        [RedisResult::Binary(v)] => {
            steps.push(format!("execute get {:?}", String::from_utf8_lossy(v)))
        }
        other => steps.push(format!("execute get {other:?}")),
    }
    connection.del(&["spin-example-n".into()]).map_err(fail)?;
    steps.push(format!(
        "execute incrby {:?}",
        connection
            .execute(
                "incrby",
                &[
                    RedisParameter::Binary(b"spin-example-n".to_vec()),
                    RedisParameter::Int64(5)
                ]
            )
            .map_err(fail)?
    ));
    steps.push(format!(
        "execute ping {:?}",
        connection.execute("ping", &[]).map_err(fail)?
    ));
    steps.push(format!(
        "incr of text {:?}",
        connection
            .incr("spin-example")
            .map_err(|e| format!("{e:?}"))
    ));
    // A reply larger than the host takes: refused, never buffered whole.
    connection
        .execute(
            "setrange",
            &[
                RedisParameter::Binary(b"spin-example-big".to_vec()),
                RedisParameter::Int64(8 << 20),
                RedisParameter::Binary(b"x".to_vec()),
            ],
        )
        .map_err(fail)?;
    let huge = connection.get("spin-example-big");
    steps.push(format!(
        "huge reply refused {}",
        matches!(&huge, Err(spin_sdk::redis::Error::Other(e)) if e.contains("byte limit"))
    ));
    Ok(steps.join("\n"))
}

/// Connects to IPv4 `address` with wasi:sockets, writes `message` and reads
/// as many bytes back. Errors are the socket error codes' own text (e.g.
/// `access-denied (error 1)`), as Spin's conformance component reports them.
fn tcp_echo(address: &str, message: &str) -> Result<String, String> {
    use wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasi::sockets::{instance_network, tcp_create_socket};
    let addr: std::net::SocketAddrV4 = address
        .parse()
        .map_err(|e| format!("{address:?} is not an IPv4 socket address: {e}"))?;
    let network = instance_network::instance_network();
    let socket =
        tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| e.to_string())?;
    let [a, b, c, d] = addr.ip().octets();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: addr.port(),
        address: (a, b, c, d),
    });
    socket
        .start_connect(&network, remote)
        .map_err(|e| e.to_string())?;
    let (input, output) = loop {
        match socket.finish_connect() {
            Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
            other => break other.map_err(|e| e.to_string())?,
        }
    };
    output
        .blocking_write_and_flush(message.as_bytes())
        .map_err(|e| format!("write: {e:?}"))?;
    let mut echoed = Vec::new();
    while echoed.len() < message.len() {
        let want = (message.len() - echoed.len()) as u64;
        echoed.extend(
            input
                .blocking_read(want)
                .map_err(|e| format!("read: {e:?}"))?,
        );
    }
    String::from_utf8(echoed).map_err(|e| format!("the echo is not UTF-8: {e}"))
}

/// An outbound GET through wasi:http 0.2 `outgoing-handler.handle`, with the
/// request options the query names, read to the end with blocking calls.
fn fetch(query: &str) -> Result<(u16, Vec<u8>, Option<String>), String> {
    use spin_sdk::wit::wasi::http0_2_0::{outgoing_handler, types as wt};
    let url = guest_common::url_param(query);
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        // Relative: wasi-http needs an authority, so spin-sdk 5 sends `:80`.
        Some(0) => (":80", rest),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Everything before `url=` is options; `h=name:value` adds a header.
    let options_part = &query[..query.find("url=").unwrap_or(query.len())];
    let headers: Vec<(String, Vec<u8>)> = options_part
        .split('&')
        .filter_map(|kv| kv.strip_prefix("h="))
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let request = wt::OutgoingRequest::new(
        wt::Fields::from_list(&headers).map_err(|e| format!("bad header: {e:?}"))?,
    );
    if let Some(method) = options_part
        .split('&')
        .find_map(|kv| kv.strip_prefix("method="))
    {
        let method = match method {
            "GET" => wt::Method::Get,
            "POST" => wt::Method::Post,
            "PUT" => wt::Method::Put,
            "DELETE" => wt::Method::Delete,
            other => wt::Method::Other(other.to_string()),
        };
        request.set_method(&method).map_err(|()| "bad method")?;
    }
    let scheme = match scheme {
        "http" => wt::Scheme::Http,
        "https" => wt::Scheme::Https,
        other => wt::Scheme::Other(other.to_string()),
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let options = wt::RequestOptions::new();
    let _ = options.set_connect_timeout(guest_common::ms_param_ns(query, "connect_ms"));
    let _ = options.set_first_byte_timeout(guest_common::ms_param_ns(query, "first_byte_ms"));
    let _ = options.set_between_bytes_timeout(guest_common::ms_param_ns(query, "between_ms"));
    let body = request.body().map_err(|()| "no body")?;
    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    wt::OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("response not ready")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no stream")?;
    let mut bytes = Vec::new();
    let mut body_error = None;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                body_error = Some(match wt::http_error_code(&e) {
                    Some(code) => format!("{code:?}"),
                    None => e.to_debug_string(),
                });
                break;
            }
        }
    }
    Ok((status, bytes, body_error))
}

fn fields(headers: &[(String, Vec<u8>)]) -> Fields {
    // Header names and values here are fixed ASCII, so this cannot fail.
    Fields::from_list(headers).unwrap_or_else(|_| Fields::new())
}

async fn respond(out: ResponseOutparam, status: u16, headers: &[(String, Vec<u8>)], body: Vec<u8>) {
    let mut all = headers.to_vec();
    all.push(("content-length".into(), body.len().to_string().into_bytes()));
    let response = OutgoingResponse::new(fields(&all));
    let _ = response.set_status_code(status);
    let mut sink = response.take_body();
    out.set(response);
    let _ = sink.send(body).await;
}
