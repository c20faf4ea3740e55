//! The embedded registry: OCI distribution API over TLS with basic auth, its storage,
//! and the installer that sets up a registry root.
//!
//! - [`storage`]: the on-disk layout (shared blobs, per-repository links, manifests,
//!   tags, referrers, upload sessions); also what `unpack --root` writes through
//! - [`names`]: repository names, tags, references, and the `/v2/…` path parser
//! - [`routes`], [`handlers`], [`errors`], [`auth`]: the HTTP API
//! - [`server`], [`gate`], [`body`], [`limits`], [`log`]: TLS listener and lifecycle,
//!   connection admission and failed-login limits, slow bodies, the request log
//! - [`config`], [`install`], [`uninstall`]: the registry root, its installer and its removal
//! - [`certs`]: the root's certificates over time: renewal, CA rollover, reload in `serve`
//! - [`users`]: the root's users and their roles
//! - [`fsck`]: checking the storage, and restoring damaged blobs from a bundle
//! - [`gc`]: garbage collection of a root (mark from every revision, sweep under the
//!   commit lock)

pub mod auth;
pub mod body;
pub mod certs;
pub mod config;
pub mod errors;
pub mod fsck;
pub mod gate;
pub mod gc;
pub mod handlers;
pub mod install;
pub mod limits;
pub mod log;
pub mod names;
pub mod routes;
pub mod server;
pub mod storage;
pub mod uninstall;
pub mod users;
