//! OpenShift: release payloads as pack sources, oc-mirror's image set files, and the
//! cluster resources `unpack` writes so a cluster pulls from the mirror.
//!
//! - [`release`]: reading a release payload's image-references and version
//! - [`imageset`]: the supported subset of oc-mirror's `ImageSetConfiguration`
//! - [`deleteset`]: oc-mirror v2's `DeleteImageSetConfiguration`, what `prune` deletes
//! - [`graph`]: the update graph (Cincinnati) and the release versions a channel asks for
//! - [`mirrorsets`]: ImageDigestMirrorSet / ImageTagMirrorSet / ImageContentSourcePolicy,
//!   the install-config snippet, the release signature ConfigMap, pull-secret merging
//! - [`operators`]: CatalogSource, ClusterCatalog and the OperatorHub patch for the
//!   catalogs of a bundle
//! - [`signatures`]: release GPG signatures fetched from a signature store and checked
//!   with OpenPGP keys
//! - [`cluster`]: the results directory `unpack` writes for a mirror ([`cluster::Mirror`])
//!
//! Where an image is mirrored is the caller's mapping (a repository per image), so this
//! module stays below the trip library that owns it.

pub mod cluster;
pub mod deleteset;
pub mod graph;
pub mod graphdata;
pub mod imageset;
pub mod mirrorsets;
pub mod operators;
pub mod release;
pub mod signatures;

use crate::bundle::manifest::{Image, Release};
use crate::error::Result;
use crate::oci::names::{valid_tag, ImageRef, TRANSPORT};

/// The repository (under the mirror's prefix) an image was mirrored to.
pub type RepositoryOf<'a> = &'a dyn Fn(&Image) -> Result<String>;

/// Where every `docker://` image of a bundle is mirrored: its source repository (as the
/// cluster names it, `quay.io/openshift-release-dev/ocp-v4.0-art-dev`) and the repository
/// at `mirror_host` (`HOST[:PORT]`) it was loaded into (`repository`). Images from OCI
/// layouts have no source registry a cluster would pull from and are left out.
pub fn mappings(images: &[Image], mirror_host: &str, repository: RepositoryOf) -> Result<Vec<mirrorsets::Mapping>> {
    let mut out = Vec::new();
    for image in images.iter().filter(|i| i.source.starts_with(TRANSPORT)) {
        let source = ImageRef::parse(&image.source)?;
        out.push(mirrorsets::Mapping {
            source: format!("{}/{}", source.registry, source.repository),
            mirror: format!("{mirror_host}/{}", repository(image)?),
            by_tag: source.tag.is_some(),
        });
    }
    Ok(out)
}

/// A Kubernetes object name (lowercase RFC 1123 subdomain) made from a bundle name.
pub fn object_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out: String = trimmed.chars().take(253).collect();
    out = out.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if out.is_empty() {
        "airlift".into()
    } else {
        out
    }
}

/// One `<version>-<arch>-<component>` tag, as `oc adm release mirror` gives each
/// component of a release: in the repository the component was mirrored to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTag {
    /// The component's image in the bundle.
    pub image: usize,
    pub repository: String,
    pub tag: String,
}

/// The release tags of `release`'s components (every component must be among `images`).
pub fn release_tags(release: &Release, images: &[Image], repository: RepositoryOf) -> Result<Vec<ReleaseTag>> {
    let arch = match &release.architectures[..] {
        [one] => one.as_str(),
        _ => "multi",
    };
    let mut tags = Vec::new();
    for component in &release.components {
        let source = format!("{TRANSPORT}{}", component.image);
        let image = images.iter().position(|i| i.source == source).ok_or_else(|| {
            crate::error::integrity(format!(
                "release {}: component {} ({}) is not among the bundle's images",
                release.version, component.name, component.image
            ))
        })?;
        let repository = repository(&images[image])?;
        let tag = format!("{}-{arch}-{}", release.version, component.name);
        if !valid_tag(&tag) {
            return Err(crate::error::usage(format!(
                "release {}: component {} gives tag '{tag}', which is not a valid tag",
                release.version, component.name
            )));
        }
        tags.push(ReleaseTag { image, repository, tag });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_kubernetes_names() {
        assert_eq!(object_name("ocp-4.16"), "ocp-4.16");
        assert_eq!(object_name("Site_Mirror"), "site-mirror");
        assert_eq!(object_name("_x_"), "x");
        assert_eq!(object_name("__"), "airlift");
    }
}
