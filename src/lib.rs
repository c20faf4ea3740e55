//! airlift carries container images across an air gap.
//!
//! `pack` resolves images from OCI layouts and writes a bundle: volumes (plain tar files
//! that never exceed a volume size) holding the blobs as chunks, described by a signed
//! manifest. `verify` checks a bundle read-only, one volume at a time. `unpack` verifies
//! while it reads and writes an OCI image layout, resumably.
//!
//! Modules:
//! - [`bundle`]: the on-media format (manifest, volumes, signing, reading, unpacking)
//! - [`minisign`]: minisign-compatible Ed25519 keys and signatures
//! - [`oci`]: media types and OCI image layouts
//! - [`client`], [`source`]: the registry client, and registries as a pack source
//! - [`openshift`]: release payloads, image set files, mirror sets for the cluster
//! - [`store`]: the content-addressed blob store and atomic commits
//! - [`media`]: opening files from the media (regular files only, bounded reads);
//!   [`text`]: escaping strings nobody signed before they are shown
//! - [`digest`], [`size`], [`time`]: small value types; [`workers`]: a scoped thread pool
//! - [`trip`]: what pack and unpack do (plan, pipeline, unpack targets), below the commands
//! - [`cli`], [`app`], [`commands`], [`output`]: the command-line tool

pub mod app;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod commands;
pub mod digest;
pub mod error;
pub mod media;
pub mod minisign;
pub mod oci;
pub mod openshift;
pub mod output;
pub mod progress;
pub mod registry;
pub mod size;
pub mod source;
pub mod store;
pub mod text;
pub mod time;
pub mod trip;
pub mod workers;
