//! What registries attach to the images pack carries: cosign's `sha256-HEX.sig`, `.att`
//! and `.sbom` tags beside an image, and OCI 1.1 referrers (the referrers API, else the
//! `sha256-HEX` fallback tag's index). [`discover`] finds them; pack resolves and packs
//! each as an image of its own, through the same pipeline, and [`record`] notes on each
//! subject what it carries and applies the `--signatures` policy.
//!
//! A packed artifact lands like any image: by its tag (`sha256-HEX.sig`, the fallback
//! tag) or by digest, so a target serves it as the source did; a target with the
//! referrers API (airlift's registry) indexes the referrers of a fallback tag's index.

use std::sync::Mutex;

use crate::bundle::manifest::{Attached, AttachedKind, Image, SignatureState};
use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::oci::names::{ImageRef, Reference, Tag, TRANSPORT};
use crate::source::registry::RegistrySource;
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
    let mut found = Vec::new();
    let tagged = |suffix: &str| -> Result<Option<String>> {
        let name = match suffix {
            "" => format!("sha256-{}", subject.hex()),
            s => format!("sha256-{}.{s}", subject.hex()),
        };
        let tag = Tag::parse(&name).ok_or_else(|| usage(format!("internal: '{name}' is not a tag")))?;
        let present = registry.has_manifest(image, &Reference::Tag(tag))?;
        Ok(present.then(|| format!("{repository}:{name}")))
    };
    for (kind, suffix) in AttachedKind::COSIGN {
        if let Some(source) = tagged(suffix)? {
            found.push((kind, source));
        }
    }
    match registry.referrers(image, subject)? {
        Some(referrers) => {
            found.extend(referrers.iter().map(|d| (AttachedKind::Referrer, format!("{repository}@{d}"))))
        }
        None => found.extend(tagged("")?.map(|source| (AttachedKind::Referrers, source))),
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
    for image in images.iter_mut().take(subjects) {
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
