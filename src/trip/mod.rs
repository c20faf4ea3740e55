//! The trip library: what `pack` and `unpack` do, above the bundle format, the registry,
//! the client, the sources and OpenShift, below the commands. It never prints: it takes
//! a [`Progress`](crate::progress::Progress) and callbacks, and returns reports.
//!
//! - [`pack`]: [`pack::Plan::resolve`] (sources → images, items, releases, bundle id) and
//!   [`pack::Plan::write`] (the fetch→volume pipeline); [`catalogs`]: its operator catalog
//!   step (read, filter, rebuild, and the images the kept bundles bring); [`releases`]: its
//!   update graph step (an image set's release channels resolved to release images)
//! - [`plan`]: `pack --dry-run`'s report (the same plan laid out without writing), what
//!   changed since an earlier bundle, oc-mirror's `mapping.txt`
//! - [`delta`]: a differential pack's bases (receipts, earlier bundles) and the layers it
//!   leaves out
//! - [`attached`]: cosign signatures, attestations, SBOMs and OCI referrers found beside
//!   the packed images, packed with them, and the `--signatures` policy
//! - [`unpack`]: an unpack's steps over a [`target::Target`] (an OCI layout, a registry
//!   root, a registry pushed to) that the bundle reader feeds
//! - [`mirror`]: which repository and tag a bundle's image gets in a registry;
//!   [`publish`]: pushing images into a registry over the network, with a journal
//! - [`receipt`]: what a destination (root, layout, registry) holds, as a receipt
//! - [`status`]: what `airlift status` says of a registry root (certificates, contents, space)
//! - [`prune`]: deleting images from a registry root by a delete file or release retention

pub mod attached;
pub mod catalogs;
pub mod delta;
pub mod mirror;
pub mod pack;
pub mod plan;
pub mod prune;
pub mod publish;
pub mod receipt;
pub mod releases;
pub mod status;
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

/// A trip's error: airlift's own, or what was being done when one happened (the
/// command turns it into the chain it reports, `error:` then `caused by:`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Airlift(#[from] crate::error::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{what}")]
    During {
        what: String,
        #[source]
        source: Box<Error>,
    },
    /// A blob the writer waited for that the fetch ended without.
    #[error("blob {0} was not fetched")]
    Unfetched(crate::digest::Digest),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// This error, as the cause of a failure while doing `what`.
    pub fn during(self, what: impl Into<String>) -> Error {
        Error::During { what: what.into(), source: Box::new(self) }
    }
}

/// Say what was being done when a step failed.
pub trait During<T> {
    fn during<W: Into<String>>(self, what: impl FnOnce() -> W) -> Result<T>;
}

impl<T, E: Into<Error>> During<T> for std::result::Result<T, E> {
    fn during<W: Into<String>>(self, what: impl FnOnce() -> W) -> Result<T> {
        self.map_err(|e| e.into().during(what()))
    }
}
