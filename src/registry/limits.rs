//! What the registry allows a client before it is cut off: connections, timeouts, body
//! rates, failed logins and upload sessions. `serve` fills this from its flags; the
//! defaults suit one site registry on a modest machine.

use std::time::Duration;

/// The registry's limits (see `airlift serve --help` for the flags that set them).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once, authenticated or not.
    pub max_connections: usize,
    /// Connections that have not yet made an authenticated request, at once; the rest of
    /// `max_connections` is kept for authenticated clients. When full, the oldest idle
    /// unauthenticated connection is closed to make room.
    pub max_unauthenticated: usize,
    /// Unauthenticated connections from one client address at once.
    pub max_unauthenticated_per_client: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A connection that moves no byte for this long is closed (once its requests ended).
    pub idle_timeout: Duration,
    /// The same for a connection that has not authenticated yet.
    pub unauthenticated_idle_timeout: Duration,
    /// A request body must bring at least `body_min_rate` bytes/s over every window of
    /// `body_window`, else the request is answered 408 and the connection closed.
    pub body_min_rate: u64,
    pub body_window: Duration,
    /// Failed logins a client address may make at once (a token bucket's size)…
    pub login_burst: u32,
    /// …and how often it gets one more.
    pub login_refill: Duration,
    /// Open upload sessions in total and per repository.
    pub max_uploads: usize,
    pub max_uploads_per_repo: usize,
    /// An upload session untouched for this long is removed.
    pub upload_expiry: Duration,
    /// A temp file (`.airlift-tmp-*`) older than this is a leftover of a killed writer.
    pub temp_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_unauthenticated: 768,
            max_unauthenticated_per_client: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            unauthenticated_idle_timeout: Duration::from_secs(10),
            body_min_rate: 1024,
            body_window: Duration::from_secs(30),
            login_burst: 10,
            login_refill: Duration::from_secs(2),
            max_uploads: 1000,
            max_uploads_per_repo: 100,
            upload_expiry: Duration::from_secs(3600),
            temp_grace: Duration::from_secs(3600),
        }
    }
}

impl Limits {
    /// How often stale uploads and temp files are looked for: a quarter of the expiry,
    /// between a minute and an hour.
    pub fn purge_every(&self) -> Duration {
        (self.upload_expiry / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600))
    }
}
