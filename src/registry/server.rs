//! The registry's lifecycle: TLS listener, one task per connection (HTTP/1.1 over
//! rustls), periodic purge of stale uploads, graceful shutdown on SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::config::Config;
use super::routes::{self, App};
use crate::error::{usage, IoContext, Result};

/// Upload sessions untouched this long are removed.
pub const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);
/// How often stale uploads are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection idle (or sending headers) this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time in-flight requests get to finish after a shutdown signal (an interrupted upload
/// resumes after a restart, so nothing is lost by keeping this short).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

/// rustls server configuration from a PEM certificate chain and its private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let pem = std::fs::read(cert).at(cert)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| usage(format!("{}: not a PEM certificate chain: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(usage(format!("{}: no certificate in it", cert.display())));
    }
    let pem = std::fs::read(key).at(key)?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| usage(format!("{}: not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| usage(format!("{}: no private key in it", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| usage(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Bind `addr`, then serve until `shutdown` completes; in-flight requests get a grace
/// period. `ready` is called with the bound address once connections are accepted.
pub async fn serve(
    app: Arc<App>,
    tls: Arc<ServerConfig>,
    addr: &str,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| usage(format!("{addr}: {e}")))?;
    let purge = tokio::spawn(purge_loop(Arc::clone(&app)));
    ready(local);
    let acceptor = TlsAcceptor::from(tls);
    let router = routes::router(app);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() returns None once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("warning: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp, acceptor.clone(), router.clone(), stop_rx.clone(), alive_tx.clone(), permit));
    }
    drop(listener);
    purge.abort();
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
    _permit: OwnedSemaphorePermit,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Remove stale upload sessions now and every hour.
async fn purge_loop(app: Arc<App>) {
    loop {
        let a = Arc::clone(&app);
        let result = tokio::task::spawn_blocking(move || {
            let n = a.storage.purge_uploads(STALE_UPLOAD)?;
            if let Ok(mut map) = a.uploads.lock() {
                map.retain(|id, _| a.storage.upload_exists(id));
            }
            Ok::<_, super::storage::StorageError>(n)
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => eprintln!("purged {n} stale upload session(s)"),
            Ok(Err(e)) => eprintln!("warning: purging stale uploads: {e}"),
            Err(e) => eprintln!("warning: purging stale uploads: {e}"),
        }
        tokio::time::sleep(PURGE_EVERY).await;
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
