//! The registry client: credentials, and pulling manifests and blobs over
//! the distribution API (`/v2/`), with retries, resumption and digest checks.
//!
//! - [`auth`]: auth.json / config.json / pull secrets, `WWW-Authenticate` challenges
//! - [`retry`]: which failures are retried and the backoff between tries
//! - [`http`]: the blocking client itself
//! - [`push`]: blob mounts and uploads, manifest pushes

pub mod auth;
pub mod http;
pub mod push;
pub mod retry;

pub use http::{Client, Manifest, Options, Stats};
