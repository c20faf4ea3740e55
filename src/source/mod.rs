//! Where `pack` gets images besides OCI layouts ([`crate::oci::layout`]): registries.

pub mod registry;
