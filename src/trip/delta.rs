//! A differential pack: what the destination already holds, from receipts it wrote
//! (`pack --have`) and earlier bundles assumed delivered (`pack --since`), and the layers
//! left out of the bundle because of it. Manifests and configs always travel (they are
//! small, and unpack reads them to check and publish an image); only layers are left out,
//! each recorded in the manifest with its size and the base it is expected from.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::bundle::manifest::{Base, BaseKind, EntryKind, Omitted};
use crate::bundle::reader::read_signed_manifest;
use crate::bundle::receipt::Receipt;
use crate::bundle::writer::Item;
use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::minisign::PublicKey;
use crate::oci::layout::BlobRef;

/// Where the far side's content is described.
#[derive(Default)]
pub struct Have {
    /// Receipts (`--have`).
    pub receipts: Vec<PathBuf>,
    /// Keys receipts must be signed by (`--have-key`); unsigned receipts are taken when
    /// there is none.
    pub receipt_keys: Vec<PublicKey>,
    /// Earlier bundles' manifests (`--since`).
    pub since: Vec<PathBuf>,
    /// Keys an earlier bundle may be signed by (the pack key's public half, and the
    /// `--have-key`s).
    pub bundle_keys: Vec<PublicKey>,
}

/// What the destination holds: each blob with its size, the base that says so, and a
/// repository there that holds it (when the base knows).
pub struct Held {
    bases: Vec<Base>,
    blobs: HashMap<Digest, Holding>,
}

struct Holding {
    size: u64,
    /// Index into `bases`.
    base: usize,
    repository: Option<String>,
}

impl Held {
    /// Load every receipt and earlier manifest, each checked against its signature.
    /// The first base to name a blob is the one recorded.
    pub fn load(have: &Have) -> Result<Held> {
        let mut held = Held { bases: Vec::new(), blobs: HashMap::new() };
        for path in &have.receipts {
            let receipt = Receipt::load(path, &have.receipt_keys)?;
            let base = held.base(BaseKind::Receipt, &receipt.id, &receipt.destination, receipt.created)?;
            for b in &receipt.blobs {
                held.add(&b.digest, b.size, base, b.repository.clone());
            }
        }
        for path in &have.since {
            let m = read_signed_manifest(path, &have.bundle_keys)?.manifest;
            let base = held.base(BaseKind::Bundle, &m.id, &m.name, m.created)?;
            for e in m.entries.iter().filter(|e| e.kind == EntryKind::Blob) {
                held.add(&e.digest, e.size, base, None);
            }
            // What it relied on is at the destination too, expected from its own base.
            for o in &m.omitted {
                if let Some(b) = m.base(&o.base) {
                    let base = held.base(b.kind, &b.id, &b.name, b.created)?;
                    held.add(&o.digest, o.size, base, o.repository.clone());
                }
            }
        }
        Ok(held)
    }

    /// The index of the base `(kind, id)`, added when new.
    fn base(&mut self, kind: BaseKind, id: &str, name: &str, created: u64) -> Result<usize> {
        if let Some(i) = self.bases.iter().position(|b| b.id == id) {
            return match self.bases[i].kind == kind {
                true => Ok(i),
                false => Err(usage(format!("a receipt and a bundle both have id {id}"))),
            };
        }
        self.bases.push(Base { kind, id: id.to_string(), name: name.to_string(), created });
        Ok(self.bases.len() - 1)
    }

    fn add(&mut self, digest: &Digest, size: u64, base: usize, repository: Option<String>) {
        self.blobs.entry(digest.clone()).or_insert(Holding { size, base, repository });
    }

    /// Take out of `items` every blob among `layers` the destination holds (with the same
    /// size), and out of `wanted` (the blobs to fetch); returns the bases relied on (in
    /// the order given) and the blobs left out.
    pub fn omit<T>(
        &self,
        items: &mut Vec<Item>,
        layers: &HashSet<Digest>,
        wanted: &mut Vec<(T, BlobRef)>,
    ) -> (Vec<Base>, Vec<Omitted>) {
        let mut omitted = Vec::new();
        let mut used = vec![false; self.bases.len()];
        items.retain(|item| {
            let holding = self.blobs.get(&item.digest).filter(|h| h.size == item.size);
            match holding.filter(|_| item.kind == EntryKind::Blob && layers.contains(&item.digest)) {
                Some(h) => {
                    used[h.base] = true;
                    omitted.push(Omitted {
                        digest: item.digest.clone(),
                        size: item.size,
                        base: self.bases[h.base].id.clone(),
                        repository: h.repository.clone(),
                    });
                    false
                }
                None => true,
            }
        });
        let left_out: HashSet<&Digest> = omitted.iter().map(|o| &o.digest).collect();
        wanted.retain(|(_, b)| !left_out.contains(&b.digest));
        let bases = self.bases.iter().zip(used).filter(|(_, u)| *u).map(|(b, _)| b.clone()).collect();
        (bases, omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::writer::{Compress, Content};

    fn item(n: u8, kind: EntryKind) -> Item {
        let bytes = vec![n; n as usize];
        Item {
            path: format!("blobs/sha256/{}", Digest::of(&bytes).hex()),
            kind,
            mode: 0o644,
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
            content: Content::Bytes(bytes),
            compress: Compress::Never,
        }
    }

    fn held(bases: &[(&str, &[(&Item, u64)])]) -> Held {
        let mut held = Held { bases: Vec::new(), blobs: HashMap::new() };
        for (id, blobs) in bases {
            let base = held.base(BaseKind::Receipt, id, "site", 0).unwrap();
            for (item, size) in *blobs {
                held.add(&item.digest, *size, base, Some("ns/app".into()));
            }
        }
        held
    }

    #[test]
    fn only_layers_the_destination_holds_with_their_size_are_left_out_first_base_first() {
        let (layer, config, other_size, unknown) =
            (item(1, EntryKind::Blob), item(2, EntryKind::Blob), item(3, EntryKind::Blob), item(4, EntryKind::Blob));
        let file = Item { kind: EntryKind::File, ..item(5, EntryKind::Blob) };
        let h = held(&[
            ("aa", &[(&layer, 1), (&config, 2), (&other_size, 99), (&file, 5)]),
            ("bb", &[(&layer, 1), (&unknown, 4)]),
        ]);
        let mut items = vec![layer.clone(), config.clone(), other_size.clone(), unknown.clone(), file.clone()];
        let layers: HashSet<Digest> = [&layer, &other_size, &unknown, &file].iter().map(|i| i.digest.clone()).collect();
        let mut wanted: Vec<((), BlobRef)> = [&layer, &config]
            .iter()
            .map(|i| ((), BlobRef { digest: i.digest.clone(), size: i.size, media_type: String::new() }))
            .collect();
        let (bases, omitted) = h.omit(&mut items, &layers, &mut wanted);
        // What is left out is not fetched either.
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].1.digest, config.digest);
        let ids: Vec<&str> = bases.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["aa", "bb"]);
        let left: Vec<(&Digest, &str)> = omitted.iter().map(|o| (&o.digest, o.base.as_str())).collect();
        assert_eq!(left, [(&layer.digest, "aa"), (&unknown.digest, "bb")]);
        assert_eq!(omitted[0].repository.as_deref(), Some("ns/app"));
        // The config (not a layer), the layer of another size and the file travel.
        let kept: Vec<&Digest> = items.iter().map(|i| &i.digest).collect();
        assert_eq!(kept, [&config.digest, &other_size.digest, &file.digest]);
    }

    #[test]
    fn a_base_unused_is_not_recorded_and_one_id_cannot_be_both_kinds() {
        let layer = item(1, EntryKind::Blob);
        let h = held(&[("aa", &[]), ("bb", &[(&layer, 1)])]);
        let mut items = vec![layer.clone()];
        let (bases, _) = h.omit::<()>(&mut items, &[layer.digest.clone()].into(), &mut Vec::new());
        assert_eq!(bases.len(), 1);
        assert_eq!(bases[0].id, "bb");
        let mut h = held(&[("aa", &[])]);
        assert!(h.base(BaseKind::Bundle, "aa", "x", 0).unwrap_err().to_string().contains("both have id aa"));
    }
}
