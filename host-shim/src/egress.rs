//! Egress capability: every HTTP request the component makes leaves through
//! here, and only here (wasmtime-wasi-http's default sender is compiled out).
//!
//! What is guaranteed:
//! - only `http` and `https`; no proxy (proxy environment variables are never
//!   read);
//! - the name is resolved once per connection, **every** resolved address is
//!   checked, and the connection goes to a checked address — no second
//!   lookup, so a name that answers a public address to the check and
//!   127.0.0.1 to the connect (DNS rebinding) cannot get in;
//! - refused by default: loopback, private, link-local (cloud metadata at
//!   169.254.169.254), CGNAT, multicast, reserved, unspecified, documentation
//!   and benchmarking ranges, and the IPv4-mapped and NAT64 forms of them;
//!   6to4 and Teredo tunnels are refused whole. A DNS failure is a refusal;
//! - redirects are never followed (the 3xx goes back to the component);
//! - one deadline covers connect, first byte and the whole response body;
//!   the body is read up to [`MAX_BODY_READ`] and no further (a receiver
//!   may stream forever): the rest is neither read nor counted, and the
//!   connection is dropped;
//! - connections are pooled per origin (keep-alive).
//!
//! An operator allowlist (host names or CIDRs) opens chosen internal targets
//! on purpose; it is empty by default.
//!
//! Every failure is an [`EgressError`]: wasi:http's own `error-code` (what
//! kind of failure, for the component to put in words) beside the host's
//! sentence (which address, which step), as Spin's outbound HTTP reports
//! them. The delivery engine hands both to the component; a component's own
//! `wasi:http` request gets the code (`DnsError` carries the sentence).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use tokio::net::TcpStream;
use wasmtime_wasi_http::p2::bindings::http::types::{DnsErrorPayload, ErrorCode, TlsAlertReceivedPayload};

pub use crate::bindings::host_info::{Refused, RefusedKind};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Response bytes read from a receiver, at most; reading stops there (the
/// history keeps a prefix: enough to see what a receiver said).
pub const MAX_BODY_READ: usize = 1024 * 1024;
/// Largest request body the component may send.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Idle keep-alive connections kept per origin.
pub const MAX_IDLE_PER_ORIGIN: usize = 32;
/// How long an idle pooled connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// A host name, matched case-insensitively without a trailing dot.
    Host(String),
    /// An address range.
    Net(IpNet),
}

impl FromStr for Allowed {
    type Err = String;
    /// Accepted forms: `10.0.0.0/8`, `::1/128`, `127.0.0.1` (a single
    /// address), `hooks.internal` (a host name, any port).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty allowlist entry".into());
        }
        if let Ok(n) = s.parse::<IpNet>() {
            return Ok(Allowed::Net(n));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Allowed::Net(IpNet::from(ip)));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && !name.is_empty() {
            Ok(Allowed::Host(name))
        } else {
            Err(format!("not a host name, address or CIDR: {s:?}"))
        }
    }
}

/// Parses a comma-separated allowlist (`WEBHOOKS_ALLOWED_HOSTS`).
pub fn parse_allowlist(s: &str) -> Result<Vec<Allowed>, String> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
}

/// Ranges refused for every resolved address, with the reason shown to admins.
static FORBIDDEN: LazyLock<Vec<(IpNet, RefusedKind, &'static str)>> = LazyLock::new(|| {
    use RefusedKind as K;
    [
        ("0.0.0.0/8", K::ThisMachine, "a 'this network' address"),
        ("10.0.0.0/8", K::PrivateNetwork, "a private address"),
        ("100.64.0.0/10", K::PrivateNetwork, "a carrier-grade NAT address"),
        ("127.0.0.0/8", K::ThisMachine, "a loopback address"),
        ("169.254.0.0/16", K::LinkLocal, "a link-local address (cloud metadata lives here)"),
        ("172.16.0.0/12", K::PrivateNetwork, "a private address"),
        ("192.0.0.0/24", K::SpecialPurpose, "an IETF protocol assignment address"),
        ("192.0.2.0/24", K::Documentation, "a documentation address"),
        ("192.88.99.0/24", K::SpecialPurpose, "a 6to4 relay address"),
        ("192.168.0.0/16", K::PrivateNetwork, "a private address"),
        ("198.18.0.0/15", K::SpecialPurpose, "a benchmarking address"),
        ("198.51.100.0/24", K::Documentation, "a documentation address"),
        ("203.0.113.0/24", K::Documentation, "a documentation address"),
        ("224.0.0.0/4", K::SpecialPurpose, "a multicast address"),
        ("240.0.0.0/4", K::SpecialPurpose, "a reserved address"),
        ("::/128", K::ThisMachine, "the unspecified address"),
        ("::1/128", K::ThisMachine, "a loopback address"),
        ("::/96", K::SpecialPurpose, "an IPv4-compatible address"),
        ("100::/64", K::SpecialPurpose, "a discard-only address"),
        ("2001::/32", K::SpecialPurpose, "a Teredo tunnel address"),
        ("2001:db8::/32", K::Documentation, "a documentation address"),
        ("2001:10::/28", K::SpecialPurpose, "an ORCHID address"),
        ("2001:2::/48", K::SpecialPurpose, "a benchmarking address"),
        ("2001:20::/28", K::SpecialPurpose, "an ORCHIDv2 address"),
        ("3fff::/20", K::Documentation, "a documentation address"),
        ("5f00::/16", K::SpecialPurpose, "a segment-routing (SRv6) address"),
        ("2002::/16", K::SpecialPurpose, "a 6to4 tunnel address"),
        ("fc00::/7", K::PrivateNetwork, "a unique local (private) address"),
        ("fe80::/10", K::LinkLocal, "a link-local address"),
        ("fec0::/10", K::PrivateNetwork, "a site-local address"),
        ("ff00::/8", K::SpecialPurpose, "a multicast address"),
    ]
    .into_iter()
    .map(|(n, kind, why)| (n.parse().expect("static CIDR"), kind, why))
    .collect()
});

/// Why an address may not be reached (its kind, and the words for it), or
/// `None` when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<(RefusedKind, &'static str)> {
    // IPv4-mapped, SIIT and NAT64 addresses carry an IPv4 address a stack
    // or a translator routes to: judge the embedded one(s).
    if let IpAddr::V6(v6) = ip {
        let inside = embedded_v4(v6);
        if !inside.is_empty() {
            return inside.into_iter().find_map(|v4| forbidden_reason(IpAddr::V4(v4)));
        }
    }
    if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Some((RefusedKind::SpecialPurpose, "the broadcast address"));
    }
    FORBIDDEN.iter().find(|(n, _, _)| n.contains(&ip)).map(|(_, kind, why)| (*kind, *why))
}

/// IPv4 addresses an IPv6 address carries for a translator or a dual stack
/// to reach; each is judged as if dialled itself.
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if v6.to_ipv4_mapped().is_some() {
        // IPv4-mapped, ::ffff:a.b.c.d.
        return vec![last32];
    }
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        // SIIT IPv4-translated (RFC 6145), ::ffff:0:a.b.c.d.
        return vec![last32];
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // Well-known NAT64 prefix (RFC 6052), 64:ff9b::a.b.c.d.
        return vec![last32];
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // Local-use NAT64 (RFC 8215), 64:ff9b:1::/48: the operator picks the
        // prefix length, so every RFC 6052 placement under the /48 counts
        // (/48: bits 48-63 and 72-87, /56: 56-63 and 72-95, /64: 72-103,
        // /96: 96-127).
        // A placement that reads 0.x.x.x is the zero padding of another
        // placement, not an address: skipped, unless all are.
        let placed: Vec<Ipv4Addr> = [
            Ipv4Addr::new(o[6], o[7], o[9], o[10]),
            Ipv4Addr::new(o[7], o[9], o[10], o[11]),
            Ipv4Addr::new(o[9], o[10], o[11], o[12]),
            last32,
        ]
        .into_iter()
        .filter(|v4| v4.octets()[0] != 0)
        .collect();
        return if placed.is_empty() { vec![last32] } else { placed };
    }
    Vec::new()
}

/// The egress policy: the allowlist plus the fixed refusals.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Entries that open internal targets on purpose.
    pub allowed: Vec<Allowed>,
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed.iter().any(|a| matches!(a, Allowed::Host(n) if *n == h))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|a| matches!(a, Allowed::Net(n) if n.contains(&ip)))
    }

    /// Checks one resolved address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        match forbidden_reason(ip) {
            Some((kind, why)) if !self.ip_allowed(ip) => Err(Refused {
                kind,
                detail: format!(
                    "refused by the egress policy: {ip} is {why} (an operator can allow it with WEBHOOKS_ALLOWED_HOSTS)"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// What can be decided from the URL alone (save time; no DNS).
    pub fn check_url(&self, raw: &str) -> Result<(), Refused> {
        let invalid = |detail: String| Refused { kind: RefusedKind::InvalidUrl, detail };
        let url = url::Url::parse(raw).map_err(|e| invalid(format!("URL is not valid: {e}.")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid("URL must start with http:// or https://.".into()));
        }
        match url.host() {
            None => Err(invalid("URL must name a host.".into())),
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if (d == "localhost" || d.ends_with(".localhost")) && !self.host_allowed(&d) {
                    Err(Refused {
                        kind: RefusedKind::ThisMachine,
                        detail: format!(
                            "refused by the egress policy: {d} names this machine (an operator can allow it with WEBHOOKS_ALLOWED_HOSTS)"
                        ),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Resolves `host` and keeps it only if every address passes.
    pub async fn resolve(
        &self,
        resolver: &dyn Resolver,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let named_ok = self.host_allowed(bare);
        if !named_ok {
            self.check_url(&format!("http://{bare}/"))?;
        }
        let addrs =
            resolver.lookup(bare, port).await.map_err(|e| dns_error(format!("DNS lookup for {bare} failed: {e}")))?;
        if addrs.is_empty() {
            return Err(dns_error(format!("DNS lookup for {bare} returned no addresses")));
        }
        if !named_ok {
            // Every address, not just the first: a resolver may rotate them.
            for a in &addrs {
                self.check_ip(a.ip())
                    .map_err(|e| Refused { detail: format!("{}; {bare} resolved to it", e.detail), ..e })?;
            }
        }
        Ok(addrs)
    }
}

/// Name resolution, replaceable in tests (a resolver that lies).
pub trait Resolver: Send + Sync + fmt::Debug {
    /// All addresses for `host`.
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The operating system's resolver.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A connection opened by the guarded connector.
pub struct GuardedStream(TokioIo<TcpStream>);

impl Connection for GuardedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A refusal or a failure: wasi:http's kind of it, and the host's sentence.
#[derive(Debug, Clone)]
pub struct EgressError {
    /// What kind of failure, as wasi:http names it.
    pub code: ErrorCode,
    /// What happened, for the history and the log: the address, the step.
    pub detail: String,
}

impl EgressError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        EgressError { code, detail: detail.into() }
    }
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A refusal of the policy, as a failed request: wasi:http's kind for it.
impl From<Refused> for EgressError {
    fn from(r: Refused) -> Self {
        let code = match r.kind {
            RefusedKind::InvalidUrl => ErrorCode::HttpRequestUriInvalid,
            _ => ErrorCode::DestinationIpProhibited,
        };
        EgressError::new(code, r.detail)
    }
}

/// A DNS failure; wasi:http's payload carries the sentence (`rcode` is
/// free text there), so a component's own request sees it too.
fn dns_error(detail: String) -> EgressError {
    EgressError::new(ErrorCode::DnsError(DnsErrorPayload { rcode: Some(detail.clone()), info_code: None }), detail)
}

/// What a failed connect was, by the OS error's kind.
fn connect_error(addr: SocketAddr, e: &std::io::Error) -> EgressError {
    use std::io::ErrorKind;
    let code = match e.kind() {
        ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => ErrorCode::DestinationIpUnroutable,
        ErrorKind::TimedOut => ErrorCode::ConnectionTimeout,
        _ => ErrorCode::DestinationUnavailable,
    };
    EgressError::new(code, format!("connecting to {addr} failed: {e}"))
}

impl std::error::Error for EgressError {}

/// Resolves, checks and connects; the only way a TCP connection is opened.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    policy: Arc<Policy>,
    resolver: Arc<dyn Resolver>,
    connect_timeout: Duration,
}

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = GuardedStream;
    type Error = EgressError;
    type Future = Pin<Box<dyn Future<Output = Result<GuardedStream, EgressError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| EgressError::new(ErrorCode::HttpRequestUriInvalid, "URL has no host"))?
                .to_owned();
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let addrs = this.policy.resolve(&*this.resolver, &host, port).await?;
            let mut last = None;
            for addr in addrs {
                match tokio::time::timeout(this.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        return Ok(GuardedStream(TokioIo::new(s)));
                    }
                    Ok(Err(e)) => last = Some(connect_error(addr, &e)),
                    Err(_) => {
                        last = Some(EgressError::new(
                            ErrorCode::ConnectionTimeout,
                            format!("connecting to {addr} timed out"),
                        ))
                    }
                }
            }
            Err(last.unwrap_or_else(|| EgressError::new(ErrorCode::DestinationUnavailable, "no address to connect to")))
        })
    }
}

type Https = hyper_rustls::HttpsConnector<GuardedConnector>;

/// The shared, pooled, policed HTTP client.
#[derive(Clone)]
pub struct Egress {
    client: Client<Https, Full<Bytes>>,
    policy: Arc<Policy>,
    timeout: Duration,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress").field("policy", &self.policy).field("timeout", &self.timeout).finish()
    }
}

/// What a sent request came back with.
#[derive(Debug)]
pub struct Fetched {
    /// Status and headers.
    pub head: http::response::Parts,
    /// Up to [`MAX_BODY_READ`] bytes of the body.
    pub body: Bytes,
}

impl Egress {
    /// A client for `policy`; `timeout` bounds each whole request.
    pub fn new(policy: Policy, resolver: Arc<dyn Resolver>, timeout: Duration) -> Self {
        let policy = Arc::new(policy);
        let connector = GuardedConnector { policy: policy.clone(), resolver, connect_timeout: timeout };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() })
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_ORIGIN)
            .build(https);
        Egress { client, policy, timeout }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The attempt deadline (connect, response and body).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `POST`s a body the component built (the delivery pipeline's path; the
    /// component's own wasi:http requests arrive in [`Hooks`]) under the
    /// policy and the deadline, `timeout` shortening it at most.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Fetched, EgressError> {
        let invalid = |m: String| EgressError::new(ErrorCode::HttpRequestUriInvalid, m);
        // WHATWG parsing, as the component's own requests get (tabs and
        // newlines dropped, host lower-cased), before hyper sees the URI.
        let url = url::Url::parse(url)
            .map_err(|e| invalid(format!("refused by the egress policy: the URL is not valid ({e})")))?;
        let mut req = http::Request::post(url.as_str());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req =
            req.body(Full::new(Bytes::from(body))).map_err(|e| invalid(format!("the request is not valid: {e}")))?;
        self.fetch(req, timeout.min(self.timeout)).await
    }

    /// Sends one request under the policy and the deadline; reads the body.
    pub async fn fetch(&self, req: http::Request<Full<Bytes>>, timeout: Duration) -> Result<Fetched, EgressError> {
        let scheme = req.uri().scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            return Err(EgressError::new(
                ErrorCode::HttpRequestUriInvalid,
                format!("refused by the egress policy: scheme {scheme:?} is not http or https"),
            ));
        }
        let run = async {
            let resp = self.client.request(req).await.map_err(|e| client_error(&e))?;
            let (head, mut body) = resp.into_parts();
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    EgressError::new(
                        ErrorCode::HttpResponseIncomplete,
                        format!("reading the response body failed: {e}"),
                    )
                })?;
                if let Ok(data) = frame.into_data() {
                    let room = MAX_BODY_READ.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if kept.len() >= MAX_BODY_READ {
                        // Stop reading: a receiver may stream forever. The
                        // connection is dropped, not returned to the pool.
                        break;
                    }
                }
            }
            Ok(Fetched { head, body: Bytes::from(kept) })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(EgressError::new(
                ErrorCode::HttpResponseTimeout,
                format!("timed out after {} ms (connect, response and body)", timeout.as_millis()),
            )),
        }
    }
}

/// The kind and sentence of a failed request: our connector's own error if
/// it is in the source chain (policy, DNS, connect), else TLS or HTTP.
fn client_error(e: &hyper_util::client::legacy::Error) -> EgressError {
    let mut msg = e.to_string();
    let mut code = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(eg) = s.downcast_ref::<EgressError>() {
            return eg.clone();
        }
        if code.is_none() {
            code = tls_code(s).or_else(|| s.downcast_ref::<hyper::Error>().map(hyper_code));
        }
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    let code =
        code.unwrap_or(if e.is_connect() { ErrorCode::DestinationUnavailable } else { ErrorCode::HttpProtocolError });
    EgressError::new(code, msg)
}

/// A TLS failure, from rustls's error. hyper-rustls wraps it in
/// `io::Error`s, whose `source()` skips the error they carry: look inside.
fn tls_code(e: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        return tls_code(inner);
    }
    let e = e.downcast_ref::<rustls::Error>()?;
    Some(match e {
        rustls::Error::InvalidCertificate(_) => ErrorCode::TlsCertificateError,
        rustls::Error::AlertReceived(alert) => ErrorCode::TlsAlertReceived(TlsAlertReceivedPayload {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        }),
        _ => ErrorCode::TlsProtocolError,
    })
}

/// What hyper's error says about the exchange.
fn hyper_code(e: &hyper::Error) -> ErrorCode {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        ErrorCode::ConnectionTerminated
    } else if e.is_timeout() {
        ErrorCode::ConnectionReadTimeout
    } else {
        ErrorCode::HttpProtocolError
    }
}

/// The `wasi:http` hooks of one store: every `outgoing-handler.handle`
/// arrives in `send_request`.
pub struct Hooks {
    egress: Egress,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Hooks {
    /// Hooks sending through `egress`, timing each request into `metrics`.
    pub fn new(egress: Egress, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Hooks { egress, metrics }
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                    HttpError,
                >,
            > + Send,
    > {
        let egress = self.egress.clone();
        let metrics = self.metrics.clone();
        Box::new(async move {
            let started = std::time::Instant::now();
            // The component may ask for less time, never for more.
            let asked = options
                .and_then(|o| [o.connect_timeout, o.first_byte_timeout].into_iter().flatten().max())
                .unwrap_or(egress.timeout);
            let timeout = asked.min(egress.timeout);
            let (parts, body) = request.into_parts();
            let body = tokio::time::timeout(timeout, http_body_util::Limited::new(body, MAX_REQUEST_BODY).collect())
                .await
                .map_err(|_| HttpError::ConnectionWriteTimeout)?
                .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                    Some(_) => HttpError::HttpRequestBodySize(None),
                    None => HttpError::InternalError(Some(format!("request body: {e}"))),
                })?
                .to_bytes();
            let req = http::Request::from_parts(parts, Full::new(body));
            let fetched = egress.fetch(req, timeout).await;
            metrics.attempt_finished(started.elapsed(), fetched.is_ok());
            let fetched = fetched.map_err(|e| {
                // The component gets the kind; the sentence goes to the log
                // (the address and the step, never the URL's path or query).
                tracing::info!(code = ?e.code, "a request of the component failed: {}", e.detail);
                HttpError::from(e.code)
            })?;
            let body: HyperOutgoingBody = Full::new(fetched.body).map_err(|never| match never {}).boxed_unsync();
            let resp = http::Response::from_parts(fetched.head, body);
            Ok((resp, Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), HttpError>> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            // SIIT and local-use NAT64, whatever the prefix length under the /48.
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b:1::7f00:1",
            "64:ff9b:1:7f00:1::",
            "64:ff9b:1:a9:fe:a9fe::",
            "64:ff9b:1::a:a00:100:0",
            "2001:2::1",
            "3fff::1",
            "5f00::1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(forbidden_reason(ip).is_some(), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "::ffff:0:101:101",
            "64:ff9b:1:101:1:101:100:101",
            "64:ff9b:1::101:101",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(forbidden_reason(ip).is_none(), "{ip} should pass");
        }
    }

    #[test]
    fn allowlist_opens_chosen_targets_only() {
        let p = Policy { allowed: parse_allowlist("127.0.0.1, hooks.internal, 10.0.0.0/8").unwrap() };
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check_ip("10.9.9.9".parse().unwrap()).is_ok());
        assert!(p.check_ip("192.168.0.1".parse().unwrap()).is_err());
        assert!(parse_allowlist("not a host!").is_err());
        assert!(Policy::default().check_url("http://localhost./").is_err());
        assert!(Policy::default().check_url("http://a.localhost/").is_err());
        assert!(Policy::default().check_url("http://example.com/").is_ok());
    }

    #[derive(Debug)]
    struct Lying(Vec<SocketAddr>);
    impl Resolver for Lying {
        fn lookup<'a>(
            &'a self,
            _host: &'a str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            let a = self.0.clone();
            Box::pin(async move { Ok(a) })
        }
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked() {
        let p = Policy::default();
        let mixed = Lying(vec!["93.184.216.34:80".parse().unwrap(), "127.0.0.1:80".parse().unwrap()]);
        let e = p.resolve(&mixed, "rebind.example", 80).await.unwrap_err();
        assert!(e.detail.contains("127.0.0.1"), "{e}");
        assert!(matches!(e.code, ErrorCode::DestinationIpProhibited), "{e}");
        let public = Lying(vec!["93.184.216.34:80".parse().unwrap()]);
        assert_eq!(p.resolve(&public, "ok.example", 80).await.unwrap().len(), 1);
        let none = Lying(vec![]);
        let e = p.resolve(&none, "empty.example", 80).await.unwrap_err();
        assert!(matches!(e.code, ErrorCode::DnsError(_)), "{e}");
    }
}
