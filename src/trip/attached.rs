//! What registries attach to the images pack carries: cosign's `sha256-HEX.sig`, `.att`
//! and `.sbom` tags beside an image, and OCI 1.1 referrers (the referrers API, else the
//! `sha256-HEX` fallback tag's index). [`discover`] finds them; pack resolves and packs
//! each as an image of its own, through the same pipeline, and [`record`] notes on each
//! subject what it carries and applies the `--signatures` policy.
//!
//! A packed artifact lands like any image: by its tag (`sha256-HEX.sig`, the fallback
//! tag) or by digest, so a target serves it as the source did; a target with the
//! referrers API (airlift's registry) indexes the referrers of a fallback tag's index.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::bundle::manifest::{Attached, AttachedKind, Image, SignatureState};
use crate::bundle::names;
use crate::bundle::reader::Bundle;
use crate::digest::Digest;
use crate::error::{integrity, usage, Result};
use crate::oci::layout::{read_limited, BlobRef};
use crate::oci::names::{ImageRef, Reference, Tag, TRANSPORT};
use crate::oci::MAX_MANIFEST;
use crate::openshift::imageset::ImageSet;
use crate::sigstore::cosign_tags;
use crate::sigstore::{verify, PublicKey, Verdict};
use crate::source::registry::RegistrySource;
use crate::store;
use crate::trip::mirror::digest_tag;
use crate::trip::pack::Request;
use crate::workers;

/// `--signatures`: what pack does about the signatures of the images it packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse an image without a cosign signature.
    Require,
    /// Carry what is there; warn about a release image without a signature.
    #[default]
    Optional,
    /// Look for nothing attached.
    Skip,
}

/// The policy and keys of a pack: `--signatures`, else the image set's
/// `mirror.signatures.policy`, else optional; `--sigstore-key`s with the image set's
/// keys per registry or repository (a key file named relative to the image set).
pub fn settings(request: &Request, imageset: Option<&ImageSet>) -> Result<(Policy, Option<Keys>)> {
    let set = imageset.map(|s| &s.signatures);
    let policy = match (request.signatures, set.and_then(|s| s.policy.as_deref())) {
        (Some(p), _) => p,
        (None, Some("require")) => Policy::Require,
        (None, Some("skip")) => Policy::Skip,
        _ => Policy::Optional,
    };
    let scoped = set.map(|s| &s.keys[..]).unwrap_or_default();
    if scoped.is_empty() {
        return Ok((policy, request.sigstore.clone()));
    }
    let mut keys = request.sigstore.clone().unwrap_or(Keys { keys: Vec::new(), scoped: Vec::new(), rekor: None });
    for (scope, file) in scoped {
        keys.scoped.push((scope.clone(), read_key(file)?.1));
    }
    Ok((policy, Some(keys)))
}

/// An artifact attached to a subject: the subject's position among the images looked
/// at, how it is attached, and the source pack resolves it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub subject: usize,
    pub kind: AttachedKind,
    pub source: String,
}

/// Everything attached to each registry image of `subjects` (source, digest), looked
/// for `parallel` images at a time; in the order of the subjects.
pub fn discover(registry: &RegistrySource, subjects: &[(&str, &Digest)], parallel: usize) -> Result<Vec<Found>> {
    let slots: Vec<Mutex<Vec<Found>>> = subjects.iter().map(|_| Mutex::new(Vec::new())).collect();
    workers::run(
        parallel.max(1),
        subjects.len(),
        || Ok(()),
        |_, i| {
            let (source, digest) = subjects[i];
            if !source.starts_with(TRANSPORT) {
                return Ok(());
            }
            let found = attached_to(registry, &ImageRef::parse(source)?, digest)?;
            let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
            slot.extend(found.into_iter().map(|(kind, source)| Found { subject: i, kind, source }));
            Ok(())
        },
    )?;
    Ok(slots.into_iter().flat_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner())).collect())
}

/// What `image`'s repository attaches to manifest `subject`.
fn attached_to(registry: &RegistrySource, image: &ImageRef, subject: &Digest) -> Result<Vec<(AttachedKind, String)>> {
    let repository = format!("{TRANSPORT}{}/{}", image.registry, image.repository.as_str());
    let tagged = |name: String| -> Result<Option<String>> {
        let tag = Tag::parse(&name).ok_or_else(|| usage(format!("internal: '{name}' is not a tag")))?;
        let present = registry.has_manifest(image, &Reference::Tag(tag))?;
        Ok(present.then(|| format!("{repository}:{name}")))
    };
    let mut found = Vec::new();
    for (kind, name) in AttachedKind::COSIGN.into_iter().zip(cosign_tags(subject)) {
        if let Some(source) = tagged(name)? {
            found.push((kind, source));
        }
    }
    match registry.referrers(image, subject)? {
        Some(referrers) => {
            found.extend(referrers.iter().map(|d| (AttachedKind::Referrer, format!("{repository}@{d}"))))
        }
        None => found.extend(tagged(digest_tag(subject))?.map(|source| (AttachedKind::Referrers, source))),
    }
    Ok(found)
}

/// Note on each subject (the first `images`, in the order [`discover`] saw them) what
/// is attached to it, now packed among `images` under its source, and whether it is
/// signed; apply `policy`: `require` refuses an unsigned image, naming it; `optional`
/// warns (through `warn`) about an unsigned release image. `releases` are the release
/// sources.
pub fn record(
    images: &mut [Image],
    subjects: usize,
    found: &[Found],
    policy: Policy,
    releases: &[String],
    built: &HashSet<Digest>,
    warn: &dyn Fn(&str),
) -> Result<()> {
    if policy == Policy::Skip {
        return Ok(());
    }
    for f in found {
        let digest = images
            .iter()
            .find(|i| i.source == f.source)
            .map(|i| i.digest.clone())
            .ok_or_else(|| usage(format!("internal: {} was not packed", f.source)))?;
        let attached = &mut images[f.subject].attached;
        if !attached.iter().any(|a| a.digest == digest && a.kind == f.kind) {
            attached.push(Attached { kind: f.kind, digest });
        }
    }
    let mut unsigned = Vec::new();
    // Images built by this pack (a rebuilt catalog, the graph-data image) were never
    // signed by anyone: they have no signature state.
    for image in images.iter_mut().take(subjects).filter(|i| !built.contains(&i.digest)) {
        let signed = image.attached.iter().any(|a| a.kind == AttachedKind::Signature);
        image.signature = Some(if signed { SignatureState::Signed } else { SignatureState::Unsigned });
        if !signed {
            unsigned.push(image.source.as_str());
        }
    }
    match policy {
        Policy::Require if !unsigned.is_empty() => Err(usage(format!(
            "--signatures require: no cosign signature (sha256-HEX.sig) found for {}",
            unsigned.join(", ")
        ))),
        _ => {
            for source in unsigned.iter().filter(|s| releases.iter().any(|r| r == *s)) {
                warn(&format!(
                    "release image {source} has no cosign signature: clusters from OpenShift 4.21 on refuse it \
                     by default (ClusterImagePolicy)"
                ));
            }
            Ok(())
        }
    }
}

/// The keys cosign signatures are checked with (`--sigstore-key`, `--rekor-key`, the
/// image set's keys per scope).
#[derive(Clone)]
pub struct Keys {
    pub keys: Vec<PublicKey>,
    /// Keys for the images under a registry or repository (scope).
    pub scoped: Vec<(String, PublicKey)>,
    pub rekor: Option<PublicKey>,
}

impl Keys {
    /// Read the PEM public keys; `None` when no `--sigstore-key` is given (clap makes
    /// `--rekor-key` need one).
    pub fn load(keys: &[PathBuf], rekor: Option<&Path>) -> Result<Option<Keys>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let keys = keys.iter().map(|k| read_key(k).map(|(_, key)| key)).collect::<Result<_>>()?;
        Ok(Some(Keys { keys, scoped: Vec::new(), rekor: rekor.map(|r| read_key(r).map(|(_, key)| key)).transpose()? }))
    }

    /// The keys that may sign the image from `source`: every global key, and those
    /// whose scope is the source's registry or repository (or a path above it).
    fn for_source(&self, source: &str) -> Vec<PublicKey> {
        let name = source.strip_prefix(TRANSPORT).unwrap_or(source);
        let within = |scope: &str| {
            name.strip_prefix(scope.trim_end_matches('/'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':', '@']))
        };
        let scoped = self.scoped.iter().filter(|(scope, _)| within(scope)).map(|(_, k)| k.clone());
        self.keys.iter().cloned().chain(scoped).collect()
    }
}

/// A PEM public key file: its text and the cosign key it holds.
fn read_key(path: &Path) -> Result<(Vec<u8>, PublicKey)> {
    let pem = read_limited(path, 1 << 20)?;
    let key = PublicKey::from_pem(&pem, &path.display().to_string())?;
    Ok((pem, key))
}

/// The PEM public key of `--image-policy`, read and checked to be a cosign key.
pub fn policy_key(path: &Path) -> Result<Vec<u8>> {
    read_key(path).map(|(pem, _)| pem)
}

/// What checking each carried cosign signature says: every image with a `.sig`
/// attached, with the verdict on it, its manifest and blobs read by `blob`.
pub fn verdicts<'i>(
    images: &'i [Image],
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
    keys: &Keys,
) -> Vec<(&'i Image, Verdict)> {
    let mut out = Vec::new();
    for image in images {
        for sig in image.attached.iter().filter(|a| a.kind == AttachedKind::Signature) {
            let verdict = match blob(&sig.digest) {
                Some(manifest) => {
                    verify(&manifest, blob, &image.digest, &keys.for_source(&image.source), keys.rekor.as_ref())
                }
                None => Verdict::Bad(format!("the signature manifest {} is missing", sig.digest)),
            };
            out.push((image, verdict));
        }
    }
    out
}

/// At pack, with keys: fetch the carried signatures' blobs (small) before the bundle is
/// written and refuse a bad one, naming its image (exit 1).
pub fn verify_at_pack(
    registry: &RegistrySource,
    images: &[Image],
    wanted: &[(ImageRef, BlobRef)],
    keys: &Keys,
) -> Result<()> {
    let signatures: HashSet<&Digest> = images
        .iter()
        .flat_map(|i| &i.attached)
        .filter(|a| a.kind == AttachedKind::Signature)
        .map(|a| &a.digest)
        .collect();
    let blobs: HashSet<&Digest> =
        images.iter().filter(|i| signatures.contains(&i.digest)).flat_map(|i| &i.blobs).collect();
    let needed: Vec<(ImageRef, BlobRef)> = wanted.iter().filter(|(_, b)| blobs.contains(&b.digest)).cloned().collect();
    registry.fetch_now(&needed)?;
    let root = registry.cache().root();
    let blob = |d: &Digest| read_limited(&store::blob_path(root, d), MAX_MANIFEST).ok();
    for (image, verdict) in verdicts(images, &blob, keys) {
        if let Verdict::Bad(why) = verdict {
            return Err(integrity(format!("{}: its cosign signature is bad: {why}", image.source)));
        }
    }
    Ok(())
}

/// The gate's evidence on one image's cosign signature.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub source: String,
    pub digest: Digest,
    /// `signed`, `unsigned` or `bad`.
    pub state: &'static str,
    /// The key that verified it, or why it is bad, or that no key checked it.
    pub detail: Option<String>,
}

/// The signature state of every image of `bundle` a signature was looked for: as
/// packed, and with `keys` each carried signature checked again offline, its blobs read
/// from the volumes (a blob on an absent volume makes it bad).
pub fn evidence(bundle: &Bundle, keys: Option<&Keys>) -> Vec<Evidence> {
    let blob = |d: &Digest| bundle.read_entry(&format!("{}{}", names::BLOBS_PREFIX, d.hex()), MAX_MANIFEST).ok()?;
    let images = &bundle.manifest.images;
    let checked = keys.map(|k| verdicts(images, &blob, k)).unwrap_or_default();
    let mut out = Vec::new();
    for image in images {
        let Some(state) = image.signature else { continue };
        let (state, detail) = match checked.iter().find(|(i, _)| std::ptr::eq(*i, image)).map(|(_, v)| v) {
            Some(Verdict::Signed { key }) => ("signed", Some(key.clone())),
            Some(Verdict::Bad(why)) => ("bad", Some(why.clone())),
            Some(Verdict::Unsigned) => ("unsigned", Some("its .sig holds no signature".to_string())),
            None if keys.is_none() && state == SignatureState::Signed => {
                ("signed", Some("not verified (no --sigstore-key)".to_string()))
            }
            None => (state.name(), None),
        };
        out.push(Evidence { source: image.source.clone(), digest: image.digest.clone(), state, detail });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release and an image, unsigned, then the release's `.sig` packed after them.
    fn packed() -> (Vec<Image>, Vec<Found>) {
        let sig = "docker://r.example/ocp/release:sha256-x.sig";
        let images = vec![
            Image::example("docker://r.example/ocp/release:4.21", 1),
            Image::example("docker://r.example/app:1", 2),
            Image::example(sig, 3),
        ];
        (images, vec![Found { subject: 0, kind: AttachedKind::Signature, source: sig.into() }])
    }

    #[test]
    fn record_marks_subjects_and_require_names_every_unsigned_image() {
        let (mut images, found) = packed();
        let releases = ["docker://r.example/ocp/release:4.21".to_string()];
        let warnings = std::cell::RefCell::new(Vec::new());
        let warn = |w: &str| warnings.borrow_mut().push(w.to_string());
        record(&mut images, 2, &found, Policy::Optional, &releases, &HashSet::new(), &warn).unwrap();
        assert_eq!(images[0].signature, Some(SignatureState::Signed));
        assert_eq!(images[0].attached, [Attached { kind: AttachedKind::Signature, digest: Digest::of(&[3]) }]);
        assert_eq!(images[1].signature, Some(SignatureState::Unsigned));
        assert_eq!(images[2].signature, None, "an attached artifact has no state of its own");
        assert!(warnings.borrow().is_empty(), "the release is signed, the unsigned image is no release");

        let (mut images, _) = packed();
        record(&mut images, 2, &[], Policy::Optional, &releases, &HashSet::new(), &warn).unwrap();
        assert!(warnings.borrow()[0].contains("release image docker://r.example/ocp/release:4.21"));
        assert_eq!(warnings.borrow().len(), 1);

        let (mut images, found) = packed();
        let e = record(&mut images, 2, &found, Policy::Require, &releases, &HashSet::new(), &warn).unwrap_err();
        assert!(e.to_string().contains("docker://r.example/app:1") && !e.to_string().contains("4.21"), "{e}");
        assert_eq!(e.status().code(), 2);

        let (mut images, found) = packed();
        record(&mut images, 2, &found, Policy::Skip, &releases, &HashSet::new(), &warn).unwrap();
        assert!(images.iter().all(|i| i.signature.is_none() && i.attached.is_empty()));
    }

    #[test]
    fn the_image_set_signatures_field_is_read_and_refused_when_wrong() {
        let doc = |signatures: &str| {
            format!(
                "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  additionalImages:\n  \
                 - name: quay.io/ns/app:1\n  signatures:\n{signatures}"
            )
        };
        let parse = |signatures: &str| crate::openshift::imageset::parse(&doc(signatures), "/etc/set/is.yaml");
        let set = parse("    policy: require\n    keys:\n    - scope: quay.io/ns\n      key: k.pub\n").unwrap();
        assert_eq!(set.signatures.policy.as_deref(), Some("require"));
        assert_eq!(set.signatures.keys, [("quay.io/ns".to_string(), PathBuf::from("/etc/set/k.pub"))]);
        let e = parse("    policy: always\n").unwrap_err().to_string();
        assert!(e.contains("/etc/set/is.yaml: mirror.signatures.policy: must be require, optional or skip"), "{e}");
        let e = parse("    keys:\n    - scope: quay.io/ns\n").unwrap_err().to_string();
        assert!(e.contains("mirror.signatures.keys[0]: needs both scope and key"), "{e}");
        let e = parse("    key: k.pub\n").unwrap_err().to_string();
        assert!(e.contains("mirror.signatures.key: unknown field"), "{e}");
    }

    #[test]
    fn scoped_keys_apply_to_their_registry_or_repository_only() {
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/sigstore/test-key.pub")).unwrap();
        let key = PublicKey::from_pem(&pem, "test-key.pub").unwrap();
        let keys = Keys { keys: vec![], scoped: vec![("quay.io/ns/".into(), key)], rekor: None };
        for (source, n) in [
            ("docker://quay.io/ns/app:1", 1),
            ("docker://quay.io/ns@sha256:00", 1),
            ("docker://quay.io/nsx/app:1", 0),
            ("docker://quay.io/other:1", 0),
        ] {
            assert_eq!(keys.for_source(source).len(), n, "{source}");
        }
    }
}
