//! airlift carries container images across an air gap: `pack` writes a chunked, signed
//! bundle of volumes; `verify` checks it read-only; `unpack` writes a layout, a registry
//! root or another registry, resumably. This crate is the library; the `airlift` binary
//! (`main.rs`: `app`, `cli`, `commands`, `output`) parses, calls it and presents.
//!
//! Layers, top to bottom (a module uses only those on its line or below; no cycles):
//! - [`trip`]: pack's plan and fetch→volume pipeline; unpack's targets (layout, root, push)
//! - [`openshift`] (releases, image sets, cluster resources), [`catalog`] (operator
//!   catalogs: read, filter, rebuild), [`source`] (layout, registry)
//! - [`bundle`] (format, reader, writer, signing, rollback policy), [`registry`] (server,
//!   storage, installer), [`client`] (auth, pull, push, retries)
//! - [`oci`] (names, references, media types, the one image walk, layouts, `index.json`),
//!   [`store`] (blobs, the one `BlobWriter`, `commit_file`, the `.airlift/` paths)
//! - [`sigstore`] (cosign keys, signature verification, Rekor bundles, image policies)
//! - [`iso9660`] (disc images of one flat directory, Joliet and Rock Ridge names)
//! - [`digest`], [`minisign`], [`media`], [`text`], [`size`], [`space`] (free space
//!   before a write), [`time`], [`progress`], [`workers`], [`error`]: values and helpers every layer may use

pub mod bundle;
pub mod catalog;
pub mod client;
pub mod digest;
pub mod error;
pub mod iso9660;
pub mod media;
pub mod minisign;
pub mod oci;
pub mod openshift;
pub mod progress;
pub mod registry;
pub mod sigstore;
pub mod size;
pub mod source;
pub mod space;
pub mod store;
pub mod text;
pub mod time;
pub mod trip;
pub mod workers;
