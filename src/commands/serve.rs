//! `airlift serve`: the registry over TLS.

use std::time::Duration;

use crate::cli::{ServeArgs, ServeLimitArgs};
use crate::error::{usage, Status};
use crate::output::Output;
use crate::registry::auth::Credentials;
use crate::registry::config::Config;
use crate::registry::limits::Limits;
use crate::registry::log::Log;
use crate::registry::routes::App;
use crate::registry::server;
use crate::registry::storage::Storage;

pub fn run(args: &ServeArgs, out: &Output) -> anyhow::Result<Status> {
    bound_allocator();
    let root = &args.root;
    let config = Config::load(root)?;
    let storage = Storage::open(&config.storage_dir(root))?;
    let users = Credentials::open(&config.resolve(root, &config.htpasswd))?;
    let tls = server::tls_config(&config.resolve(root, &config.tls_cert), &config.resolve(root, &config.tls_key))?;
    let addr = args.addr.clone().unwrap_or_else(|| server::listen_address(&config));
    let log = match &args.log {
        Some(path) => Log::file(path)?,
        None => Log::Stderr,
    };
    let app = App::with(storage, users, args.read_only, limits(args.upload_expiry, &args.limits), log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the async runtime: {e}")))?;
    let read_only = if args.read_only { " (read-only)" } else { "" };
    runtime.block_on(async {
        let shutdown = server::shutdown_signal()?;
        // The readiness line: printed even with --quiet, scripts wait for it.
        let ready = |a| eprintln!("listening on https://{a}{read_only}");
        server::serve(app, tls, &addr, ready, shutdown).await
    })?;
    out.info("stopped");
    Ok(Status::Ok)
}

/// The defaults, with what the flags change.
fn limits(upload_expiry: u64, a: &ServeLimitArgs) -> Limits {
    let d = Limits::default();
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    Limits {
        max_connections: a.max_connections.unwrap_or(d.max_connections),
        max_unauthenticated: a.max_unauthenticated.unwrap_or(d.max_unauthenticated),
        max_unauthenticated_per_client: a.max_unauthenticated_per_client.unwrap_or(d.max_unauthenticated_per_client),
        handshake_timeout: secs(a.handshake_timeout, d.handshake_timeout),
        idle_timeout: secs(a.idle_timeout, d.idle_timeout),
        unauthenticated_idle_timeout: secs(a.unauthenticated_idle_timeout, d.unauthenticated_idle_timeout),
        body_min_rate: a.body_min_rate.unwrap_or(d.body_min_rate),
        body_window: secs(a.body_window, d.body_window),
        login_burst: a.login_burst.unwrap_or(d.login_burst),
        login_refill: secs(a.login_refill, d.login_refill),
        max_uploads: a.max_uploads.unwrap_or(d.max_uploads),
        max_uploads_per_repo: a.max_uploads_per_repo.unwrap_or(d.max_uploads_per_repo),
        upload_expiry: Duration::from_secs(upload_expiry),
        temp_grace: secs(a.temp_grace, d.temp_grace),
    }
}

/// A long-running server allocates on many threads (blob reads reuse pooled buffers, but
/// request bodies, TLS records and manifests do not); with glibc's defaults those land in
/// per-thread arenas and a raised mmap threshold, and the heap creeps. Fixed settings keep
/// large buffers in mmap (returned to the system when freed) and the arenas few, so memory
/// stays flat under load.
fn bound_allocator() {
    // SAFETY: mallopt only adjusts malloc's tunables; called before any server thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
