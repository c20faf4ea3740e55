//! The one walk over an image graph: index → manifests → config and layers, each digest
//! met once, parents before children.
//!
//! Manifests and indexes are read through a [`Manifests`] source (a source layout, a
//! blob store, registry storage, a remote registry), which checks what it returns against
//! the descriptor and [`MAX_MANIFEST`](crate::oci::MAX_MANIFEST); configs and layers are
//! never read. What to record, which children to follow (a platform filter, what a bundle
//! carries) and what to refuse (schema1, a missing blob) is the [`Visitor`]'s.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{usage, Error, Result};
use crate::oci::layout::{read_limited, BlobRef};
use crate::oci::{is_index, is_manifest, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MAX_MANIFEST};
use crate::store::BlobStore;

/// What a descriptor's media type says a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
    /// A Docker schema1 manifest, which airlift does not carry.
    Schema1,
    /// Anything else: a config, a layer, an unknown document.
    Blob,
}

impl Kind {
    pub fn of(media_type: &str) -> Kind {
        if is_index(media_type) {
            Kind::Index
        } else if is_manifest(media_type) {
            Kind::Manifest
        } else if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
            Kind::Schema1
        } else {
            Kind::Blob
        }
    }
}

/// Where a node sits in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The image the walk started from.
    Top,
    /// A manifest an index names.
    Child,
    Config,
    Layer,
}

/// A node's content as the walk read it.
#[derive(Debug)]
pub enum Doc {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
    /// Schema1 bytes, read but not parsed.
    Schema1,
    /// A config or layer, or a top or child whose media type is neither: not read.
    Blob,
    /// A manifest or index the source does not hold.
    Absent,
}

/// One node of the graph, met once.
#[derive(Debug)]
pub struct Node<'a> {
    pub blob: &'a BlobRef,
    pub role: Role,
    /// 0 for the top, one more per edge.
    pub depth: usize,
    pub doc: &'a Doc,
}

/// What went wrong in a document, for the source to word its error.
#[derive(Debug)]
pub enum Invalid {
    /// The bytes are not the index their descriptor says.
    Index(serde_json::Error),
    /// The bytes are not the image manifest their descriptor says.
    Manifest(serde_json::Error),
    /// A descriptor in the document has no valid digest.
    Descriptor(String),
}

/// Where a walk reads manifests and indexes.
pub trait Manifests {
    /// The bytes of manifest or index `blob`, checked against its digest and size; `None`
    /// when this source does not hold it.
    fn manifest(&self, blob: &BlobRef, role: Role) -> Result<Option<Vec<u8>>>;

    /// The error for document `blob` that is not what its descriptor says.
    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error;
}

/// What a walk does at each node.
pub trait Visitor {
    /// Whether to walk into `child` (described by `desc`) of `parent`; called for every
    /// child, before its digest is checked against those already met.
    fn enter(&mut self, _parent: &Node, _child: &BlobRef, _desc: &Descriptor) -> Result<bool> {
        Ok(true)
    }

    /// A node, the first time its digest is met, before its children.
    fn visit(&mut self, node: &Node) -> Result<()>;

    /// A node after its children.
    fn leave(&mut self, _node: &Node) -> Result<()> {
        Ok(())
    }
}

/// Walk the image whose top manifest or index is `top`.
pub fn walk(source: &dyn Manifests, top: &BlobRef, visitor: &mut dyn Visitor) -> Result<()> {
    let mut seen = HashSet::new();
    step(source, visitor, &mut seen, top, Role::Top, 0)
}

fn step(
    source: &dyn Manifests,
    visitor: &mut dyn Visitor,
    seen: &mut HashSet<Digest>,
    blob: &BlobRef,
    role: Role,
    depth: usize,
) -> Result<()> {
    if !seen.insert(blob.digest.clone()) {
        return Ok(());
    }
    let doc = read(source, blob, role)?;
    let node = Node { blob, role, depth, doc: &doc };
    visitor.visit(&node)?;
    let children: Vec<(&Descriptor, Role)> = match &doc {
        Doc::Index(index) => index.manifests().iter().map(|d| (d, Role::Child)).collect(),
        Doc::Manifest(m) => {
            std::iter::once((m.config(), Role::Config)).chain(m.layers().iter().map(|l| (l, Role::Layer))).collect()
        }
        Doc::Schema1 | Doc::Blob | Doc::Absent => Vec::new(),
    };
    for (desc, child_role) in children {
        let child = BlobRef::of(desc).map_err(|e| source.invalid(blob, Invalid::Descriptor(e)))?;
        if visitor.enter(&node, &child, desc)? {
            step(source, visitor, seen, &child, child_role, depth + 1)?;
        }
    }
    visitor.leave(&node)
}

/// Read and parse a node: manifests, indexes and schema1 through the source (for the
/// top and an index's children only), nothing else.
fn read(source: &dyn Manifests, blob: &BlobRef, role: Role) -> Result<Doc> {
    let kind = match role {
        Role::Config | Role::Layer => Kind::Blob,
        Role::Top | Role::Child => Kind::of(&blob.media_type),
    };
    if kind == Kind::Blob {
        return Ok(Doc::Blob);
    }
    let Some(bytes) = source.manifest(blob, role)? else { return Ok(Doc::Absent) };
    Ok(match kind {
        Kind::Index => Doc::Index(serde_json::from_slice(&bytes).map_err(|e| source.invalid(blob, Invalid::Index(e)))?),
        Kind::Manifest => {
            Doc::Manifest(serde_json::from_slice(&bytes).map_err(|e| source.invalid(blob, Invalid::Manifest(e)))?)
        }
        Kind::Schema1 | Kind::Blob => Doc::Schema1,
    })
}

/// Verified blobs in a store: a child an index names may be absent (left out by a
/// platform filter).
impl Manifests for BlobStore {
    fn manifest(&self, blob: &BlobRef, role: Role) -> Result<Option<Vec<u8>>> {
        let path = self.path(&blob.digest);
        if role == Role::Child && !path.is_file() {
            return Ok(None);
        }
        read_limited(&path, MAX_MANIFEST).map(Some)
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        match problem {
            Invalid::Index(e) => usage(format!("index {}: {e}", blob.digest)),
            Invalid::Manifest(e) => usage(format!("manifest {}: {e}", blob.digest)),
            Invalid::Descriptor(e) => usage(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{OCI_INDEX, OCI_MANIFEST};
    use std::collections::HashMap;

    struct Memory(HashMap<Digest, Vec<u8>>);

    impl Manifests for Memory {
        fn manifest(&self, blob: &BlobRef, _: Role) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(&blob.digest).cloned())
        }
        fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
            usage(format!("{}: {problem:?}", blob.digest))
        }
    }

    #[derive(Default)]
    struct Record(Vec<String>);

    impl Visitor for Record {
        fn visit(&mut self, node: &Node) -> Result<()> {
            self.0.push(format!("{:?} {:?} {}", node.role, node.depth, &node.blob.digest.hex()[..4]));
            Ok(())
        }
        fn leave(&mut self, node: &Node) -> Result<()> {
            self.0.push(format!("leave {}", &node.blob.digest.hex()[..4]));
            Ok(())
        }
    }

    fn desc(mt: &str, bytes: &[u8]) -> serde_json::Value {
        serde_json::json!({ "mediaType": mt, "digest": Digest::of(bytes).to_string(), "size": bytes.len() })
    }

    #[test]
    fn walks_once_per_digest_parents_first() {
        let config = b"{}".to_vec();
        let layer = b"layer".to_vec();
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer), desc("application/vnd.oci.image.layer.v1.tar", &layer)],
        }))
        .unwrap();
        let absent = b"absent".to_vec();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [desc(OCI_MANIFEST, &m), desc(OCI_MANIFEST, &m), desc(OCI_MANIFEST, &absent)],
        }))
        .unwrap();
        let source = Memory([(Digest::of(&m), m.clone()), (Digest::of(&index), index.clone())].into_iter().collect());
        let top = BlobRef { digest: Digest::of(&index), size: index.len() as u64, media_type: OCI_INDEX.into() };
        let mut record = Record::default();
        walk(&source, &top, &mut record).unwrap();
        let h = |b: &[u8]| Digest::of(b).hex()[..4].to_string();
        let (i, m, c, l, a) = (h(&index), h(&m), h(&config), h(&layer), h(&absent));
        assert_eq!(
            record.0,
            [
                format!("Top 0 {i}"),
                format!("Child 1 {m}"),
                format!("Config 2 {c}"),
                format!("leave {c}"),
                format!("Layer 2 {l}"),
                format!("leave {l}"),
                format!("leave {m}"),
                format!("Child 1 {a}"),
                format!("leave {a}"),
                format!("leave {i}"),
            ]
        );
    }
}
