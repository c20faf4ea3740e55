//! The trip library: what `pack` and `unpack` do, above the bundle format, the registry,
//! the client, the sources and OpenShift, below the commands.

pub mod mirror;
pub mod publish;
pub mod target;
pub mod unpack;

use crate::bundle::manifest::Image;
use crate::oci::IndexEntry;

/// How an image is listed in an OCI layout's `index.json`.
pub fn index_entry(image: &Image) -> IndexEntry<'_> {
    IndexEntry {
        digest: &image.digest,
        media_type: &image.media_type,
        size: image.size,
        reference: image.reference.as_deref(),
    }
}
