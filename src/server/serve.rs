//! The connection loop (`axum::serve` sets no timer and no cap, so it is ours): HTTP/1.1 with
//! a header-read timeout that also ends idle keep-alive connections, at most
//! `max_connections` open at once (lowered to leave the rest of the app its file descriptors;
//! the rest wait in the kernel's queue instead of taking descriptors), at most `max_connections_per_client` from one address (more are closed at
//! once, so one client cannot hold the others out), and a graceful stop: first a drain (every
//! answer says `Connection: close`, so no kept-alive connection is left for a proxy to race
//! its close), then no new connections (those the kernel has already taken are served),
//! requests in flight finish, idle connections close, new ones once they have sent their
//! request.

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::ConnectInfo,
    http::{HeaderValue, Request, header},
    response::Response,
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulConnection,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tower::ServiceExt as _;

use super::client_addr::{ClientAddr, client_of, counted_as};
pub use crate::config::ServerSettings;

/// Whether the instance has been told to stop and is draining: `/readyz` answers 503, and
/// every answer closes its connection (HTTP/1.1 `Connection: close`: hyper closes it once the
/// answer is written).
#[derive(Clone, Default, Debug)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, for good.
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One client's connection, counted until dropped.
struct Counted {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Counted> {
        let mut open = self.0.lock().expect("connection counts");
        let count = open.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Counted {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().expect("connection counts");
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// File descriptors kept for everything but client connections: the database pools, calls to
/// Hint and the partners, log files.
const RESERVED_DESCRIPTORS: usize = 128;

/// The connection cap, lowered so that client connections can never take the descriptors the
/// rest of the app needs (Linux: the soft `RLIMIT_NOFILE` in /proc/self/limits).
fn within_descriptors(max_connections: usize) -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft_limit {
        Some(limit) => {
            let fits = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16);
            if fits < max_connections {
                tracing::warn!(
                    max_connections = fits,
                    open_files = limit,
                    "connection cap lowered to fit the open-files limit"
                );
            }
            max_connections.min(fits)
        }
        None => max_connections,
    }
}

/// How long a connection that has sent no request yet is waited for once the server stops.
const FIRST_REQUEST_AT_STOP: Duration = Duration::from_secs(1);

/// Most connections taken from the kernel's queue once stopped (under load they keep coming).
const SWEPT_AT_STOP: usize = 1024;

/// Serves `router` on `listener` until `stop` completes, closing each connection after its
/// answer once `draining` is on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    draining: Draining,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let max_connections = within_descriptors(settings.max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let per_client = Arc::new(PerClient::default());
    let proxies = Arc::new(settings.trusted_proxies.clone());
    // Whether the log has said that a proxy seems to be in front without being trusted.
    let proxy_warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::pin!(stop);
    // Once stopped: how many more connections the kernel had already completed are taken.
    let mut sweeping: Option<usize> = None;
    loop {
        let (slot, (stream, peer)) = match &mut sweeping {
            None => {
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut stop => {
                        sweeping = Some(SWEPT_AT_STOP);
                        continue;
                    }
                };
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => (slot, accepted),
                        Err(e) => {
                            // Out of file descriptors and the like: wait for connections to close.
                            tracing::error!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    },
                    () = &mut stop => {
                        sweeping = Some(SWEPT_AT_STOP);
                        continue;
                    }
                }
            }
            // Connections the kernel has completed are served before the listener closes:
            // closing it resets them, and a proxy that has sent a request on one may not send
            // that request elsewhere (a POST).
            Some(0) => break,
            Some(left) => {
                *left -= 1;
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                match std::future::poll_fn(|cx| std::task::Poll::Ready(listener.poll_accept(cx)))
                    .await
                {
                    std::task::Poll::Ready(Ok(accepted)) => (slot, accepted),
                    _ => break,
                }
            }
        };
        let counted = if proxies.trusts(peer.ip()) {
            None
        } else {
            match per_client.enter(counted_as(peer.ip()), settings.max_connections_per_client) {
                Some(counted) => Some(counted),
                None => {
                    tracing::debug!(
                        "a client is over its connection cap; a new connection was closed"
                    );
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let closing = draining.clone();
        let served = Arc::new(AtomicBool::new(false));
        let service = router.clone().map_request({
            let (proxies, proxy_warned, served) =
                (proxies.clone(), proxy_warned.clone(), served.clone());
            move |mut request: Request<Incoming>| {
                served.store(true, Ordering::Relaxed);
                let client = client_of(&proxies, peer.ip(), &request);
                if client == peer.ip()
                    && request.headers().contains_key("x-forwarded-for")
                    && !proxies.trusts(peer.ip())
                    && !proxy_warned.swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        "requests arrive with X-Forwarded-For from a peer that is not a trusted \
                         proxy: if Chartbridge runs behind a proxy, every user shares one client \
                         budget and the proxy gets the per-client connection cap; set \
                         CHARTBRIDGE_TRUSTED_PROXIES to its addresses (said once)"
                    );
                }
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request.extensions_mut().insert(ClientAddr(client));
                request
            }
        });
        let service =
            TowerToHyperService::new(service.map_response(move |mut response: Response| {
                if closing.is_on() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let stopped = stopped_rx.clone();
        tokio::spawn(async move {
            serve_until_stopped(connection, served, stopped).await;
            drop((slot, counted));
        });
    }
    drop(listener);
    let _ = stopped_tx.send(true);
    // Every connection gives its slot back once it has ended.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(settings.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open at the end of the grace period were dropped");
    }
}

/// Serves one connection and, once the server has stopped, ends it gracefully: one that has
/// served requests as soon as it is idle (hyper closes it then), a new one only after its first
/// request or [`FIRST_REQUEST_AT_STOP`] without one. Hyper would close a new connection it has
/// read nothing from yet, and a proxy may have sent a request on it already (accepted as the
/// server stopped), a request it may not send elsewhere.
async fn serve_until_stopped<C: GracefulConnection>(
    connection: C,
    served: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connection = std::pin::pin!(connection);
    // A client that goes away or sends garbage ends its own connection; nothing to log.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped.wait_for(|stopped| *stopped) => {}
    }
    if !served.load(Ordering::Relaxed) {
        // Its answer says `Connection: close` (the drain): it ends by itself once answered.
        tokio::select! {
            _ = connection.as_mut() => return,
            () = tokio::time::sleep(FIRST_REQUEST_AT_STOP) => {}
        }
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
