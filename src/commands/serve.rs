//! `airlift serve`: the registry over TLS.

use crate::cli::ServeArgs;
use crate::error::{usage, Status};
use crate::output::Output;
use crate::registry::auth::Htpasswd;
use crate::registry::config::Config;
use crate::registry::routes::App;
use crate::registry::server;
use crate::registry::storage::Storage;

pub fn run(args: &ServeArgs, out: &Output) -> anyhow::Result<Status> {
    bound_allocator();
    let root = &args.root;
    let config = Config::load(root)?;
    let storage = Storage::open(&config.storage_dir(root))?;
    let htpasswd = Htpasswd::load(&config.resolve(root, &config.htpasswd))?;
    let tls = server::tls_config(&config.resolve(root, &config.tls_cert), &config.resolve(root, &config.tls_key))?;
    let addr = args.addr.clone().unwrap_or_else(|| server::listen_address(&config));
    let app = App::new(storage, htpasswd, args.read_only);
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

/// A long-running server streams blobs through short-lived 256 KiB buffers on many
/// threads; with glibc's defaults those land in per-thread arenas and a raised mmap
/// threshold, and the heap creeps. Fixed settings keep large buffers in mmap (returned to
/// the system when freed) and the arenas few, so memory stays flat under load.
fn bound_allocator() {
    // SAFETY: mallopt only adjusts malloc's tunables; called before any server thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
