//! The HTTP listener of `serve`: accepts connections and keeps them bounded
//! under abuse, so that no anonymous client can make the server unreachable.
//!
//! - Headers must arrive within [`Limits::header_timeout`]; the same clock
//!   closes an idle keep-alive connection (hyper re-arms it before each
//!   request's head).
//! - A request body must keep moving: each frame within
//!   [`Limits::body_timeout`] (tower-http's `RequestBodyTimeout`).
//! - At most [`Limits::max_connections`] connections are open at once, kept
//!   below the process's file limit. When a new connection arrives at the
//!   cap, the oldest connection with no request in progress (a half-sent
//!   header, an idle keep-alive) is closed to make room: a slowloris of
//!   thousands of half-open connections cannot lock `/healthz` or a real
//!   admin out, since every newcomer is admitted at the cost of the oldest
//!   idle one. Only when every connection is mid-request is a newcomer
//!   turned away.
//! - On shutdown, accepting stops and connections finish their request
//!   (hyper's graceful shutdown), for at most [`Limits::shutdown_grace`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::AbortHandle;
use tower_service::Service;

/// How the listener bounds its connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once (see [`connection_cap`]).
    pub max_connections: usize,
    /// For a request's head to arrive, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// For each frame of a request body.
    pub body_timeout: Duration,
    /// For connections to finish their requests after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: connection_cap(),
            // Long enough for any real client on a slow link; short enough
            // that a half-sent header does not hold a file for minutes.
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept back from the connection cap: the database and its
/// WAL, the component's memory, egress connections (one per request on the
/// wire: workers × batch size), the log.
const RESERVED_FILES: u64 = 256;

/// The most connections this process can hold without running out of files
/// (accept would then fail for everyone): the soft `RLIMIT_NOFILE` less what
/// the rest of the host needs, between 64 and 16,384.
pub fn connection_cap() -> usize {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    soft.saturating_sub(RESERVED_FILES).clamp(64, 16_384) as usize
}

/// One open connection: whether a request is in progress and since when,
/// and how to close it.
struct Conn {
    busy: Arc<AtomicUsize>,
    /// When its current request began (ms on the listener's clock).
    since: Arc<AtomicU64>,
    abort: Option<AbortHandle>,
}

/// The open connections, oldest first (ids grow).
#[derive(Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, Conn>,
}

impl Open {
    /// Admits a connection at `now_ms`, closing one if at `cap`: the oldest
    /// idle one, else the oldest whose request has run longer than
    /// `slow_ms` (a body trickled in, a frame every few seconds, never
    /// looks idle); `None` when every connection is in a young request.
    fn admit(&mut self, cap: usize, now_ms: u64, slow_ms: u64) -> Option<(u64, Arc<AtomicUsize>, Arc<AtomicU64>)> {
        if self.conns.len() >= cap {
            let idle = self.conns.iter().find(|(_, c)| c.busy.load(Ordering::Acquire) == 0).map(|(id, _)| *id);
            let slow = || {
                self.conns
                    .iter()
                    .find(|(_, c)| now_ms.saturating_sub(c.since.load(Ordering::Acquire)) > slow_ms)
                    .map(|(id, _)| *id)
            };
            let victim = idle.or_else(slow)?;
            if let Some(c) = self.conns.remove(&victim)
                && let Some(a) = c.abort
            {
                a.abort();
            }
        }
        let id = self.next;
        self.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let since = Arc::new(AtomicU64::new(now_ms));
        self.conns.insert(id, Conn { busy: busy.clone(), since: since.clone(), abort: None });
        Some((id, busy, since))
    }
}

/// Removes its connection from the open set when the connection's task ends
/// (finished, failed or aborted).
struct Leave(Arc<Mutex<Open>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut o) = self.0.lock() {
            o.conns.remove(&self.1);
        }
    }
}

/// Counts a request in progress on its connection until dropped.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// connections finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Mutex::new(Open::default()));
    let clock = std::time::Instant::now();
    let now_ms = move || clock.elapsed().as_millis() as u64;
    let slow_ms = limits.header_timeout.max(limits.body_timeout).as_millis() as u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of files or a connection reset before it was
                    // accepted: the listener itself is fine; pause briefly
                    // rather than spin on a full file table.
                    tracing::debug!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = open.lock().map(|mut o| o.admit(limits.max_connections, now_ms(), slow_ms)).unwrap_or(None);
        let Some((id, busy, since)) = admitted else {
            tracing::warn!(cap = limits.max_connections, "every connection is in a young request; turning one away");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            busy.fetch_add(1, Ordering::AcqRel);
            since.store(now_ms(), Ordering::Release);
            let guard = Busy(busy.clone());
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            let mut router = router.clone();
            async move {
                let resp = router.call(req.map(axum::body::Body::new)).await?;
                // Busy until the response's last byte is handed to hyper: a
                // connection still sending a long page is not idle.
                Ok::<_, std::convert::Infallible>(resp.map(|b| {
                    axum::body::Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                        let _held = &guard;
                        f
                    }))
                }))
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        let leave = Leave(open.clone(), id);
        let task = tokio::spawn(async move {
            let _leave = leave;
            if let Err(e) = conn.await {
                tracing::debug!("connection from {addr} ended: {e}");
            }
        });
        if let Ok(mut o) = open.lock() {
            match o.conns.get_mut(&id) {
                Some(c) => c.abort = Some(task.abort_handle()),
                // Already chosen to make room for a newer one.
                None => task.abort(),
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("connections still open after {:?}; closing them", limits.shutdown_grace);
            if let Ok(o) = open.lock() {
                o.conns.values().filter_map(|c| c.abort.as_ref()).for_each(AbortHandle::abort);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let mut o = Open::default();
        let (a, busy_a, _) = o.admit(2, 0, 10_000).unwrap();
        let (b, _, _) = o.admit(2, 0, 10_000).unwrap();
        busy_a.fetch_add(1, Ordering::AcqRel);
        // `a` is mid-request: `b`, the oldest idle one, goes.
        let (c, busy_c, _) = o.admit(2, 1_000, 10_000).unwrap();
        assert_eq!(o.conns.keys().copied().collect::<Vec<_>>(), vec![a, c]);
        assert!(!o.conns.contains_key(&b));
        // All in young requests: the newcomer is turned away.
        busy_c.fetch_add(1, Ordering::AcqRel);
        assert!(o.admit(2, 5_000, 10_000).is_none());
        assert_eq!(o.conns.len(), 2);
        // A request running past the slow mark (a trickled body) makes room.
        let (d, _, _) = o.admit(2, 10_500, 10_000).unwrap();
        assert_eq!(o.conns.keys().copied().collect::<Vec<_>>(), vec![c, d], "`a` (since 0) went");
    }

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let cap = connection_cap() as u64;
        assert!(cap >= 64);
        assert!(cap <= soft.saturating_sub(RESERVED_FILES).max(64));
    }
}
