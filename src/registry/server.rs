//! The registry's lifecycle: TLS listener, one task per connection (HTTP/1.1 over
//! rustls), periodic purge of stale uploads and temp files, graceful shutdown on
//! SIGTERM/SIGINT. The certificate is reloaded when its files change, and its expiry
//! warned of (see [`watch_certificate`]). Connections are admitted by the [`Gate`] (a
//! share kept for authenticated clients), time out in the handshake and when idle, and close with
//! close_notify after a bounded drain of what the client still sends (see [`drain`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderValue};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::body::MinRate;
use super::certs::ServedCert;
use super::config::Config;
use super::gate::{Conn, Gate};
use super::limits::Limits;
use super::routes::{self, App};
use crate::error::{usage, Result};

/// After an answer given before the request body was read, how long the connection
/// reads what the client still sends, at most…
const LINGER: Duration = Duration::from_secs(30);
/// …and how many bytes…
const LINGER_BYTES: u64 = 1 << 30;
/// …and how long a pause of the client ends it…
const LINGER_PAUSE: Duration = Duration::from_millis(500);
/// …and how many connections do so at once (more close at once).
const MAX_LINGERING: usize = 64;
/// How long close_notify gets to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time in-flight requests get to finish after a shutdown signal (an interrupted upload
/// resumes after a restart, so nothing is lost by keeping this short).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the certificate's expiry is looked at.
const DAY: Duration = Duration::from_secs(86_400);

/// The address `serve` listens on when not told: the config's `listen`, which may be
/// `HOST:PORT` or just a host (then with the config's port).
pub fn listen_address(config: &Config) -> String {
    if config.listen.parse::<SocketAddr>().is_ok() {
        config.listen.clone()
    } else if let Ok(std::net::IpAddr::V6(ip)) = config.listen.parse::<std::net::IpAddr>() {
        format!("[{ip}]:{}", config.port)
    } else if config.listen.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        config.listen.clone()
    } else {
        format!("{}:{}", config.listen, config.port)
    }
}

/// What the listener presents: the rustls configuration, whose certificate is `certs`.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub certs: Arc<ServedCert>,
}

/// rustls server configuration from a PEM certificate chain and its private key, which
/// `serve` reloads when the files change (`install --renew` writes them).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Tls> {
    let certs = Arc::new(ServedCert::load(cert, key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&certs) as Arc<dyn rustls::server::ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { config: Arc::new(config), certs })
}

/// Every second, load the certificate again when its files changed; at start, daily and
/// after a reload, warn in the log when it expires within 30 days.
async fn watch_certificate(app: Arc<App>, certs: Arc<ServedCert>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut warned: Option<Instant> = None;
    loop {
        tick.tick().await;
        match certs.reload() {
            Ok(None) => {}
            Ok(Some(info)) => {
                let now = crate::time::now();
                app.log.event("certificate_reloaded", serde_json::json!({ "certificate": info.document(now) }));
                warned = None;
            }
            Err(e) => {
                app.log.event("warning", serde_json::json!({ "message": format!("certificate not reloaded: {e}") }))
            }
        }
        if warned.is_some_and(|at| at.elapsed() < DAY) {
            continue;
        }
        warned = Some(Instant::now());
        let info = certs.info();
        let now = crate::time::now();
        if let Some(message) = info.expiry_warning(now) {
            let fields = serde_json::json!({ "message": message, "certificate": info.document(now) });
            app.log.event("warning", fields);
        }
    }
}

/// Bind `addr`, then serve until `shutdown` completes; in-flight requests get a grace
/// period. `ready` is called with the bound address once connections are accepted.
/// Before that, stale upload sessions and temp files left by killed writers are purged.
pub async fn serve(
    app: Arc<App>,
    tls: Tls,
    addr: &str,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| usage(format!("{addr}: {e}")))?;
    purge(Arc::clone(&app)).await;
    let purge = tokio::spawn(purge_loop(Arc::clone(&app)));
    let watch = tokio::spawn(watch_certificate(Arc::clone(&app), tls.certs));
    app.log.event("listening", serde_json::json!({ "address": format!("https://{local}") }));
    ready(local);
    let acceptor = TlsAcceptor::from(tls.config);
    let router = routes::router(Arc::clone(&app));
    let gate = Gate::new(app.limits.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() returns None once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                app.log.event("warning", serde_json::json!({ "message": format!("accept: {e}") }));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Every slot held by authenticated or busy connections: refuse this one.
        let Some(ticket) = gate.admit(peer) else { continue };
        let _ = tcp.set_nodelay(true);
        let conn = Conn { peer, ticket: Arc::new(ticket) };
        let linger = Arc::clone(&lingering);
        tokio::spawn(connection(
            tcp,
            conn,
            acceptor.clone(),
            router.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
            linger,
        ));
    }
    drop(listener);
    purge.abort();
    watch.abort();
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
    Ok(())
}

/// Why a connection's wait ended.
enum Event {
    Done,
    Close,
    Tick,
}

async fn connection(
    tcp: TcpStream,
    conn: Conn,
    acceptor: TlsAcceptor,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
    lingering: Arc<Semaphore>,
) {
    let limits = conn.ticket.limits().clone();
    let activity = Activity::new();
    let tcp = Watched { inner: tcp, activity: activity.clone() };
    let stream = tokio::select! {
        r = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            _ => return,
        },
        _ = conn.ticket.close.notified() => return,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).keep_alive(true);
    let service = service(conn.clone(), router, &limits);
    let mut http = builder.serve_connection(TokioIo::new(stream), service);
    let mut closing = false;
    let mut done = false;
    loop {
        let idle_limit =
            if conn.ticket.is_authenticated() { limits.idle_timeout } else { limits.unauthenticated_idle_timeout };
        // Past the limit while a request is busy: look again in a second, not in a loop.
        let check = (activity.last() + idle_limit).max(Instant::now() + Duration::from_millis(500));
        let event = tokio::select! {
            _ = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => Event::Done,
            _ = conn.ticket.close.notified(), if !closing => Event::Close,
            _ = stop.wait_for(|s| *s), if !closing => Event::Close,
            _ = tokio::time::sleep_until(check) => Event::Tick,
        };
        match event {
            Event::Done => {
                done = true;
                break;
            }
            Event::Close => {
                closing = true;
                Pin::new(&mut http).graceful_shutdown();
            }
            // Nothing moved for the idle limit, and no request is being answered (a
            // handler may work long without I/O, e.g. hashing a large upload).
            Event::Tick
                if activity.last() + idle_limit <= Instant::now() && !conn.ticket.busy.load(Ordering::Relaxed) =>
            {
                break
            }
            Event::Tick => {}
        }
    }
    let mut io = http.into_parts().io.into_inner();
    let unread = conn.ticket.body_unread.load(Ordering::Relaxed);
    // The slot is free once the answer is out; lingering is bounded on its own.
    drop(conn);
    // The last answer came before the request body was read: read what the client still
    // sends before closing. Any other connection just closes.
    if done && !closing && unread {
        if let Ok(_permit) = lingering.try_acquire() {
            drain(&mut io).await;
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
}

/// Read and drop what the client still sends (the rest of a body it was sending when it
/// was answered early) until it closes or pauses, for a bounded time and amount, so that
/// it reads the answer: closing with unread bytes makes the kernel reset the connection
/// and the client lose the answer, and a client that streams its body (reqwest's blocking
/// client, `unpack --to`) only reads the answer once the body is sent. A pause ends it:
/// a client that sent everything and waits for the close is not kept waiting long.
async fn drain<S: AsyncRead + Unpin>(io: &mut S) {
    let drain = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match tokio::time::timeout(LINGER_PAUSE, io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n as u64),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The per-connection service: the router, with the connection as a request extension,
/// the body under a minimum rate, and the connection marked busy while a request runs.
fn service(
    conn: Conn,
    router: axum::Router,
    limits: &Limits,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = Pin<
        Box<dyn Future<Output = std::result::Result<axum::response::Response, std::convert::Infallible>> + Send>,
    >,
> + Clone {
    let (min_rate, window) = (limits.body_min_rate, limits.body_window);
    let svc = move |req: hyper::Request<hyper::body::Incoming>| {
        let conn = conn.clone();
        let mut router = router.clone();
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            let busy = Busy::mark(Arc::clone(&conn.ticket.busy));
            let ticket = Arc::clone(&conn.ticket);
            let (parts, body) = req.into_parts();
            let (body, ended) = MinRate::new(body, min_rate, window);
            let mut req = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            req.extensions_mut().insert(conn);
            let mut response = router.call(req).await;
            // Answered before the body was read: the connection cannot carry another
            // request; say so, so the client does not reuse it (the rest of the body is
            // drained before the connection closes).
            let unread = !ended.load(Ordering::Relaxed);
            ticket.body_unread.store(unread, Ordering::Relaxed);
            if let Ok(r) = &mut response {
                if unread {
                    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            drop(busy);
            response
        });
        fut
    };
    hyper::service::service_fn(svc)
}

/// The busy flag of a connection, cleared when dropped.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn mark(flag: Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Relaxed);
        Busy(flag)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    epoch: Instant,
    millis: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity { epoch: Instant::now(), millis: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        self.millis.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// A stream that records when it last moved a byte.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Purge stale upload sessions and temp files (off the async threads).
async fn purge(app: Arc<App>) {
    let log = Arc::clone(&app);
    let log = &log.log;
    let result = tokio::task::spawn_blocking(move || {
        let limits = &app.limits;
        let n = app.storage.purge_uploads(limits.upload_expiry)?;
        let t = app.storage.purge_temp_files(limits.temp_grace)?;
        if let Ok(mut map) = app.uploads.lock() {
            map.retain(|id, _| app.storage.upload_exists(id));
        }
        Ok::<_, super::storage::StorageError>((n, t))
    })
    .await;
    match result {
        Ok(Ok((0, 0))) => {}
        Ok(Ok((n, t))) => log.event("purged", serde_json::json!({ "uploads": n, "temp_files": t })),
        Ok(Err(e)) => log.event("warning", serde_json::json!({ "message": format!("purging stale uploads: {e}") })),
        Err(e) => log.event("warning", serde_json::json!({ "message": format!("purging stale uploads: {e}") })),
    }
}

/// Purge every `purge_every` (the first purge ran before serving).
async fn purge_loop(app: Arc<App>) {
    loop {
        tokio::time::sleep(app.limits.purge_every()).await;
        purge(Arc::clone(&app)).await;
    }
}

/// Completes on SIGTERM or SIGINT. Set up before serving, so a signal that arrives
/// early is not missed.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| usage(format!("SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| usage(format!("SIGINT handler: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        Config {
            version: 1,
            hostname: "h".into(),
            listen: listen.into(),
            port: 8443,
            tls_cert: "c".into(),
            tls_key: "k".into(),
            ca_cert: None,
            htpasswd: "p".into(),
            storage: "s".into(),
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(&config("0.0.0.0:5000")), "0.0.0.0:5000");
        assert_eq!(listen_address(&config("0.0.0.0")), "0.0.0.0:8443");
        assert_eq!(listen_address(&config("::")), "[::]:8443");
        assert_eq!(listen_address(&config("[::]:9000")), "[::]:9000");
        assert_eq!(listen_address(&config("localhost:9000")), "localhost:9000");
        assert_eq!(listen_address(&config("localhost")), "localhost:8443");
    }
}
