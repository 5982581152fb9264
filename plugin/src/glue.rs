//! The binding glue: WIT imports become a [`Host`], WIT exports call the
//! logic modules. Nothing here decides anything.

use std::cell::RefCell;

use crate::host::{
    DbError, Dialect, Host, Level, OutRequest, OutResponse, Refused, RefusedKind, Rows, Sent, Settings, Ticket,
    TransformError, TransformInput, TransformOutcome, TransformOutput, Value,
};
use crate::outbox::MAX_STORED_BODY;
use crate::{admin, api, catalog, outbox, schema, sessions};

wit_bindgen::generate!({
    path: "../wit",
    world: "panel:webhooks/webhooks",
    generate_all,
});

use exports::panel::webhooks as ex;
use panel::webhooks::{host_info, log as wlog, storage};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};

struct Component;
export!(Component);

/// The host as seen from inside the component.
struct WasmHost;

fn to_wit(v: &Value) -> storage::Value {
    match v {
        Value::Null => storage::Value::Null,
        Value::Integer(i) => storage::Value::Integer(*i),
        Value::Real(r) => storage::Value::Real(*r),
        Value::Text(t) => storage::Value::Text(t.clone()),
        Value::Blob(b) => storage::Value::Blob(b.clone()),
    }
}

fn from_wit(v: storage::Value) -> Value {
    match v {
        storage::Value::Null => Value::Null,
        storage::Value::Integer(i) => Value::Integer(i),
        storage::Value::Real(r) => Value::Real(r),
        storage::Value::Text(t) => Value::Text(t),
        storage::Value::Blob(b) => Value::Blob(b),
    }
}

fn db_err(e: storage::Error) -> DbError {
    match e {
        storage::Error::Constraint(m) => DbError::Constraint(m),
        storage::Error::Busy => DbError::Busy,
        storage::Error::InvalidStatement(m) => DbError::InvalidStatement(m),
        storage::Error::TooLarge => DbError::TooLarge,
        storage::Error::Io(m) => DbError::Io(m),
    }
}

impl Host for WasmHost {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let p: Vec<_> = params.iter().map(to_wit).collect();
        storage::execute(sql, &p).map_err(db_err)
    }
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let p: Vec<_> = params.iter().map(to_wit).collect();
        let r = storage::query(sql, &p).map_err(db_err)?;
        Ok(Rows {
            columns: r.columns,
            rows: r.rows.into_iter().map(|row| row.into_iter().map(from_wit).collect()).collect(),
        })
    }
    fn execute_many(&self, sql: &str, rows: &[Vec<Value>]) -> Result<Vec<u64>, DbError> {
        let rows: Vec<Vec<storage::Value>> = rows.iter().map(|r| r.iter().map(to_wit).collect()).collect();
        storage::execute_many(sql, &rows).map_err(db_err)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        storage::execute_batch(sql).map_err(db_err)
    }
    fn begin(&self) -> Result<(), DbError> {
        storage::begin().map_err(db_err)
    }
    fn commit(&self) -> Result<(), DbError> {
        storage::commit().map_err(db_err)
    }
    fn rollback(&self) {
        storage::rollback()
    }
    fn now_ms(&self) -> u64 {
        let t = wasi::clocks::wall_clock::now();
        t.seconds * 1000 + u64::from(t.nanoseconds / 1_000_000)
    }
    fn random_bytes(&self, n: usize) -> Vec<u8> {
        wasi::random::random::get_random_bytes(n as u64)
    }
    fn log(&self, level: Level, message: &str) {
        let l = match level {
            Level::Debug => wlog::Level::Debug,
            Level::Info => wlog::Level::Info,
            Level::Warn => wlog::Level::Warn,
            Level::Error => wlog::Level::Error,
        };
        wlog::log(l, message)
    }
    fn mount_path(&self) -> String {
        host_info::mount_path()
    }
    fn settings(&self) -> Settings {
        let s = host_info::get_settings();
        Settings {
            retry_schedule_ms: s.retry_schedule_ms,
            attempt_timeout_ms: s.attempt_timeout_ms,
            lease_ms: s.lease_ms,
            auto_disable_after_ms: s.auto_disable_after_ms,
            retention_ms: s.retention_ms,
            per_webhook_concurrency: s.per_webhook_concurrency,
        }
    }
    fn dialect(&self) -> Dialect {
        // Fixed for the host's life (the WIT says so): asked once per instance.
        static DIALECT: std::sync::OnceLock<Dialect> = std::sync::OnceLock::new();
        *DIALECT.get_or_init(|| match host_info::get_dialect() {
            host_info::Dialect::Sqlite => Dialect::Sqlite,
            host_info::Dialect::Postgres => Dialect::Postgres,
        })
    }
    fn node_id(&self) -> String {
        // Fixed for the host's life, as the dialect.
        static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        NODE.get_or_init(host_info::node_id).clone()
    }
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        panel::webhooks::secrets::seal(plaintext)
    }
    fn sign(&self, sealed: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        panel::webhooks::secrets::sign(sealed, message)
    }
    fn open_legacy(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        panel::webhooks::secrets::open(sealed)
    }
    fn check_destination(&self, url: &str) -> Result<(), Refused> {
        use host_info::RefusedKind as K;
        host_info::check_destination(url).map_err(|r| Refused {
            kind: match r.kind {
                K::InvalidUrl => RefusedKind::InvalidUrl,
                K::ThisMachine => RefusedKind::ThisMachine,
                K::PrivateNetwork => RefusedKind::PrivateNetwork,
                K::LinkLocal => RefusedKind::LinkLocal,
                K::Documentation => RefusedKind::Documentation,
                K::SpecialPurpose => RefusedKind::SpecialPurpose,
            },
            detail: r.detail,
        })
    }
    fn http_start(&self, request: &OutRequest) -> Result<Ticket, String> {
        http_start(request)
    }
    fn http_wait(&self, timeout_ms: u64) -> Vec<(Ticket, Sent)> {
        http_wait(timeout_ms)
    }
    fn attempts_recorded(&self, succeeded: u32, retrying: u32, exhausted: u32, skipped: u32) {
        panel::webhooks::telemetry::attempts_recorded(succeeded, retrying, exhausted, skipped)
    }
    fn transform_load(&self, component: &[u8]) -> Result<String, TransformError> {
        panel::webhooks::transform::load(component).map_err(transform_err)
    }
    fn transform_run(&self, digest: &str, input: &TransformInput) -> Result<TransformOutcome, TransformError> {
        use panel::webhooks::transform as t;
        let input = t::Input {
            event_type: input.event_type.clone(),
            msg_id: input.msg_id.clone(),
            timestamp: input.timestamp.clone(),
            body: input.body.clone(),
        };
        match t::run(digest, &input).map_err(transform_err)? {
            t::Outcome::Send(o) => {
                Ok(TransformOutcome::Send(TransformOutput { body: o.body, headers: o.headers, path: o.path }))
            }
            t::Outcome::Skip(why) => Ok(TransformOutcome::Skip(why)),
        }
    }
}

fn transform_err(e: panel::webhooks::transform::Error) -> TransformError {
    use panel::webhooks::transform::Error as E;
    match e {
        E::NotLoaded => TransformError::NotLoaded,
        E::Invalid(m) => TransformError::Invalid(m),
        E::Failed(m) => TransformError::Failed(m),
    }
}

fn monotonic_ms() -> u64 {
    wasi::clocks::monotonic_clock::now() / 1_000_000
}

/// Starts one request: headers, `handle`, then the body (bodies over 4 KiB
/// need `handle` first or the write blocks).
fn start(r: &OutRequest) -> Result<FutureIncomingResponse, String> {
    let url = url::Url::parse(&r.url).map_err(|e| format!("invalid URL: {e}"))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        s => return Err(format!("unsupported scheme {s}")),
    };
    let host = url.host_str().ok_or("URL has no host")?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let fields = Fields::new();
    for (k, v) in &r.headers {
        fields.append(k, v.as_bytes()).map_err(|e| format!("header {k}: {e:?}"))?;
    }
    // Without content-length the body would go out chunked.
    fields.append("content-length", r.body.len().to_string().as_bytes()).map_err(|e| format!("{e:?}"))?;
    let req = OutgoingRequest::new(fields);
    let _ = req.set_method(&Method::Post);
    let _ = req.set_scheme(Some(&scheme));
    req.set_authority(Some(&authority)).map_err(|()| "invalid authority".to_string())?;
    req.set_path_with_query(Some(&path)).map_err(|()| "invalid path".to_string())?;
    let opts = RequestOptions::new();
    let ns = r.timeout_ms.saturating_mul(1_000_000);
    let _ = opts.set_connect_timeout(Some(ns));
    let _ = opts.set_first_byte_timeout(Some(ns));
    let _ = opts.set_between_bytes_timeout(Some(ns));
    let body = req.body().map_err(|()| "request body already taken".to_string())?;
    let fut = outgoing_handler::handle(req, Some(opts)).map_err(|e| describe(&e, None))?;
    {
        let stream = body.write().map_err(|()| "request body stream unavailable".to_string())?;
        for chunk in r.body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("writing the body: {e:?}"))?;
        }
        // The stream must go before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(|e| describe(&e, None))?;
    Ok(fut)
}

/// Reads a response, keeping at most `MAX_STORED_BODY` bytes of the body.
fn read(resp: IncomingResponse) -> OutResponse {
    let status = resp.status();
    let headers =
        resp.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let mut body = Vec::new();
    let mut size = 0u64;
    if let Ok(incoming) = resp.consume() {
        if let Ok(stream) = incoming.stream() {
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                size += chunk.len() as u64;
                let room = MAX_STORED_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            drop(stream);
        }
        drop(incoming);
    }
    OutResponse { status, headers, body, body_size: size }
}

/// What an admin reads in the history for a failed request: the kind of
/// failure (wasi:http's error code) in words, then the host's own sentence
/// when there is one (which address, which step).
fn describe(e: &ErrorCode, detail: Option<&str>) -> String {
    let words: std::borrow::Cow<'static, str> = match e {
        ErrorCode::DestinationIpProhibited => {
            "Not sent: the address is on a private or reserved network, which webhooks may not reach".into()
        }
        ErrorCode::DnsError(_) => "Not sent: the host name could not be found (DNS)".into(),
        ErrorCode::DnsTimeout => "Not sent: looking up the host name timed out (DNS)".into(),
        ErrorCode::DestinationNotFound => "Not sent: the host name could not be found".into(),
        ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            "Not sent: the receiver's address could not be reached".into()
        }
        ErrorCode::ConnectionRefused => "Not sent: the receiver refused the connection (nothing listens there)".into(),
        ErrorCode::ConnectionTimeout => "Not sent: connecting to the receiver timed out".into(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            "No answer: the receiver did not answer in time".into()
        }
        ErrorCode::ConnectionWriteTimeout => "Not sent: the request could not be written in time".into(),
        ErrorCode::ConnectionTerminated => "No answer: the receiver closed the connection before answering".into(),
        ErrorCode::ConnectionLimitReached => "Not sent: too many connections are open".into(),
        ErrorCode::TlsCertificateError => "Not sent: the receiver's TLS certificate is not valid for it".into(),
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => {
            "Not sent: the TLS handshake with the receiver failed".into()
        }
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestUriTooLong => "Not sent: the URL is not valid".into(),
        ErrorCode::HttpRequestBodySize(_) => "Not sent: the request body is too large".into(),
        ErrorCode::HttpResponseIncomplete => "The response was cut off before its end".into(),
        ErrorCode::HttpProtocolError => "The receiver did not answer with valid HTTP".into(),
        ErrorCode::InternalError(Some(m)) if detail.is_none() => return m.clone(),
        other => format!("Not sent: {other:?}").into(),
    };
    // A DNS error's payload carries the host's sentence when no detail came.
    let detail = detail.or(match e {
        ErrorCode::DnsError(p) => p.rcode.as_deref(),
        _ => None,
    });
    match detail {
        Some(d) if !d.is_empty() => format!("{words} ({d})"),
        _ => words.into_owned(),
    }
}

/// Requests in flight in this instance: ticket, response future, start time.
struct RequestsInFlight {
    next: Ticket,
    live: Vec<(Ticket, FutureIncomingResponse, u64)>,
}

thread_local! {
    static IN_FLIGHT: RefCell<RequestsInFlight> = const { RefCell::new(RequestsInFlight { next: 1, live: Vec::new() }) };
}

fn http_start(r: &OutRequest) -> Result<Ticket, String> {
    let t0 = monotonic_ms();
    let fut = start(r)?;
    Ok(IN_FLIGHT.with_borrow_mut(|f| {
        let t = f.next;
        f.next = f.next.wrapping_add(1).max(1);
        f.live.push((t, fut, t0));
        t
    }))
}

/// Waits on every future in flight plus a timer with wasi:io/poll.
fn http_wait(timeout_ms: u64) -> Vec<(Ticket, Sent)> {
    let ready: Vec<usize> = IN_FLIGHT.with_borrow(|f| {
        if f.live.is_empty() {
            return Vec::new();
        }
        let timer = wasi::clocks::monotonic_clock::subscribe_duration(timeout_ms.saturating_mul(1_000_000));
        let subs: Vec<wasi::io::poll::Pollable> = f.live.iter().map(|(_, fut, _)| fut.subscribe()).collect();
        let mut refs: Vec<&wasi::io::poll::Pollable> = subs.iter().collect();
        refs.push(&timer);
        let hit = wasi::io::poll::poll(&refs);
        // Pollables are children of the futures: they drop here, first.
        hit.into_iter().map(|k| k as usize).filter(|k| *k < f.live.len()).collect()
    });
    let mut done = Vec::new();
    IN_FLIGHT.with_borrow_mut(|f| {
        let mut taken: Vec<(Ticket, FutureIncomingResponse, u64)> = Vec::new();
        let mut sorted = ready;
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for i in sorted {
            taken.push(f.live.swap_remove(i));
        }
        for (t, fut, t0) in taken {
            let result = match fut.get() {
                None => {
                    f.live.push((t, fut, t0));
                    continue;
                }
                Some(Err(())) => Err("response already taken".to_string()),
                Some(Ok(Err(code))) => Err(describe(&code, None)),
                Some(Ok(Ok(resp))) => Ok(read(resp)),
            };
            done.push((t, Sent { result, duration_ms: Some(monotonic_ms().saturating_sub(t0)) }));
        }
    });
    done
}

// ------------------------------------------------------------------ exports

impl ex::plugin::Guest for Component {
    fn describe() -> ex::plugin::Manifest {
        ex::plugin::Manifest {
            name: crate::NAME.into(),
            version: crate::VERSION.into(),
            menu: vec![ex::plugin::MenuEntry {
                section: "Integrations".into(),
                label: "Webhooks".into(),
                path: "/".into(),
            }],
            events: catalog::EVENTS
                .iter()
                .map(|e| ex::plugin::EventTypeInfo {
                    name: e.name.into(),
                    category: e.category.into(),
                    description: e.description.into(),
                    data_schema: e.schema.into(),
                    example: e.example(),
                })
                .collect(),
        }
    }

    fn migrate() -> Result<u32, String> {
        schema::migrate(&WasmHost)
    }
}

fn flash_to_wit(f: Option<admin::Flash>) -> Option<panel::webhooks::types::Flash> {
    use panel::webhooks::types::{Flash, FlashKind};
    f.map(|f| Flash {
        kind: match f.kind {
            admin::FlashKind::Success => FlashKind::Success,
            admin::FlashKind::Info => FlashKind::Info,
            admin::FlashKind::Error => FlashKind::Error,
        },
        message: f.message,
    })
}

impl ex::admin::Guest for Component {
    fn handle(req: ex::admin::Request) -> ex::admin::Response {
        let r = admin::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            form: req.form,
            actor: req.actor,
            csrf_token: req.csrf_token,
            csrf_field: req.csrf_field,
        };
        match admin::handle(&WasmHost, &r) {
            admin::Response::Page { status, title, fragment, flash } => {
                ex::admin::Response::Page(ex::admin::Page { status, title, fragment, flash: flash_to_wit(flash) })
            }
            admin::Response::Redirect { location, flash } => {
                ex::admin::Response::Redirect(ex::admin::Redirect { location, flash: flash_to_wit(flash) })
            }
            admin::Response::NotFound => ex::admin::Response::NotFound,
        }
    }
}

impl ex::management::Guest for Component {
    fn handle(req: ex::management::ApiRequest) -> ex::management::ApiResponse {
        let r = api::Request { method: req.method, path: req.path, query: req.query, body: req.body, actor: req.actor };
        let out = api::handle(&WasmHost, &r);
        ex::management::ApiResponse { status: out.status, body: out.body, allow: out.allow }
    }
}

fn raise_err(e: outbox::RaiseError) -> ex::events::RaiseError {
    match e {
        outbox::RaiseError::UnknownType(m) => ex::events::RaiseError::UnknownType(m),
        outbox::RaiseError::InvalidData { field, message } => {
            ex::events::RaiseError::InvalidData(ex::events::Invalid { field, message })
        }
        outbox::RaiseError::Conflict(m) => ex::events::RaiseError::Conflict(m),
        outbox::RaiseError::Storage(m) => ex::events::RaiseError::Storage(m),
    }
}

fn new_event(e: ex::events::Event) -> outbox::NewEvent {
    outbox::NewEvent { id: e.id, event_type: e.event_type, occurred_at_ms: e.occurred_at_ms, data_json: e.data_json }
}

/// Sandbox test hooks: a `test.webhook` event whose data names a hook
/// misbehaves on purpose. Compiled only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
fn test_hook(e: &ex::events::Event) {
    if e.event_type != catalog::TEST_EVENT {
        return;
    }
    if e.data_json.contains(r#""__hook":"loop""#) {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if e.data_json.contains(r#""__hook":"grow""#) {
        let mut v: Vec<Vec<u8>> = Vec::new();
        loop {
            v.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&v);
        }
    }
    if e.data_json.contains(r#""__hook":"trap""#) {
        panic!("test hook: trap");
    }
}

impl ex::events::Guest for Component {
    fn raise(e: ex::events::Event) -> Result<ex::events::Raised, ex::events::RaiseError> {
        #[cfg(feature = "test-hooks")]
        test_hook(&e);
        let mut out = outbox::raise_batch(&WasmHost, &[new_event(e)]).map_err(raise_err)?;
        out.pop().map(raised_to_wit).ok_or_else(|| ex::events::RaiseError::Storage("nothing raised".into()))
    }

    fn raise_batch(es: Vec<ex::events::Event>) -> Result<Vec<ex::events::Raised>, ex::events::RaiseError> {
        #[cfg(feature = "test-hooks")]
        es.iter().for_each(test_hook);
        let events: Vec<_> = es.into_iter().map(new_event).collect();
        let out = outbox::raise_batch(&WasmHost, &events).map_err(raise_err)?;
        Ok(out.into_iter().map(raised_to_wit).collect())
    }

    fn raise_each(es: Vec<ex::events::Event>) -> Vec<Result<ex::events::Raised, ex::events::RaiseError>> {
        #[cfg(feature = "test-hooks")]
        es.iter().for_each(test_hook);
        let events: Vec<_> = es.into_iter().map(new_event).collect();
        outbox::raise_each(&WasmHost, &events).into_iter().map(|r| r.map(raised_to_wit).map_err(raise_err)).collect()
    }
}

impl ex::sessions::Guest for Component {
    fn open(key: String, user: String) -> Result<(), String> {
        sessions::open(&WasmHost, &key, &user).map_err(|e| e.to_string())
    }

    fn find(key: String) -> Result<Option<String>, String> {
        sessions::find(&WasmHost, &key).map_err(|e| e.to_string())
    }

    fn close(key: String) -> Result<(), String> {
        sessions::close(&WasmHost, &key).map_err(|e| e.to_string())
    }
}

fn raised_to_wit(r: outbox::Raised) -> ex::events::Raised {
    ex::events::Raised { event_id: r.event_id, queued: r.queued }
}

impl ex::deliveries::Guest for Component {
    fn step(
        raised: Vec<ex::events::Event>,
        finished: Vec<ex::deliveries::Sent>,
        claim_max: u32,
    ) -> Result<ex::deliveries::StepReport, String> {
        #[cfg(feature = "test-hooks")]
        raised.iter().for_each(test_hook);
        let raised: Vec<_> = raised.into_iter().map(new_event).collect();
        let finished: Vec<outbox::Finished> = finished
            .into_iter()
            .map(|f| outbox::Finished {
                delivery_id: f.delivery_id,
                started_ms: f.started_ms,
                duration_ms: f.duration_ms,
                result: f
                    .outcome
                    .map(|r| OutResponse { status: r.status, headers: r.headers, body: r.body, body_size: r.body_size })
                    .map_err(|e| match e {
                        ex::deliveries::AttemptError::Transport(t) => {
                            outbox::AttemptError::Transport(describe(&t.code, Some(&t.detail)))
                        }
                        // Not sent because the transformation skipped it:
                        // `build` said so in the note the host handed back.
                        ex::deliveries::AttemptError::Unsendable(_)
                            if crate::transform::Note::is_skip(f.transformed.as_deref()) =>
                        {
                            match crate::transform::Note::parse(f.transformed.as_deref()) {
                                Some(crate::transform::Note::Skipped(why)) => outbox::AttemptError::Skipped(why),
                                _ => outbox::AttemptError::Skipped(String::new()),
                            }
                        }
                        ex::deliveries::AttemptError::Unsendable(m) => outbox::AttemptError::Transport(m),
                        ex::deliveries::AttemptError::BuildFailed(id) => outbox::AttemptError::BuildFailed(id),
                    }),
                request_headers: f.request_headers,
                transformed: f.transformed,
            })
            .collect();
        let r = outbox::step(&WasmHost, &raised, &finished, claim_max).map_err(|e| {
            WasmHost.log(Level::Error, &format!("delivery step failed: {e}"));
            e.to_string()
        })?;
        Ok(ex::deliveries::StepReport {
            raised: r.raised.into_iter().map(|r| r.map(raised_to_wit).map_err(raise_err)).collect(),
            claimed: r.claimed,
            next_due_ms: r.next_due_ms,
        })
    }

    fn build(claimed: Vec<i64>) -> Result<Vec<Result<ex::deliveries::Outgoing, ex::deliveries::Unsendable>>, String> {
        let built = outbox::build(&WasmHost, &claimed).map_err(|e| {
            WasmHost.log(Level::Error, &format!("building requests failed: {e}"));
            e.to_string()
        })?;
        Ok(built
            .into_iter()
            .map(|b| match b {
                Ok(o) => Ok(ex::deliveries::Outgoing {
                    delivery_id: o.delivery_id,
                    webhook_id: o.webhook_id,
                    url: o.request.url,
                    headers: o.request.headers,
                    body: o.request.body,
                    timeout_ms: o.request.timeout_ms,
                    transformed: o.transformed,
                }),
                Err(f) => Err(ex::deliveries::Unsendable {
                    delivery_id: f.delivery_id,
                    error: f.result.err().map(|e| e.to_string()).unwrap_or_default(),
                    request_headers: f.request_headers,
                    transformed: f.transformed,
                }),
            })
            .collect())
    }

    fn release(claimed: Vec<i64>) -> Result<u64, String> {
        outbox::release(&WasmHost, &claimed).map_err(|e| {
            WasmHost.log(Level::Error, &format!("handing back claimed deliveries failed: {e}"));
            e.to_string()
        })
    }

    fn stats() -> Result<ex::deliveries::QueueStats, String> {
        let s = outbox::stats(&WasmHost).map_err(|e| format!("reading queue stats failed: {e}"))?;
        Ok(ex::deliveries::QueueStats {
            pending: s.pending,
            retrying: s.retrying,
            oldest_waiting_ms: s.oldest_waiting_ms,
        })
    }

    fn maintain() -> Result<ex::deliveries::Pruned, String> {
        let p = outbox::maintain(&WasmHost).map_err(|e| format!("pruning history failed: {e}"))?;
        Ok(ex::deliveries::Pruned { attempts: p.attempts, deliveries: p.deliveries, events: p.events })
    }
}
