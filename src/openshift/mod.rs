//! OpenShift: release payloads as pack sources, oc-mirror's image set files, and the
//! cluster resources `unpack` writes so a cluster pulls from the mirror.
//!
//! - [`release`]: reading a release payload's image-references and version
//! - [`imageset`]: the supported subset of oc-mirror's `ImageSetConfiguration`
//! - [`mirrorsets`]: ImageDigestMirrorSet / ImageTagMirrorSet / ImageContentSourcePolicy,
//!   the install-config snippet, the release signature ConfigMap, pull-secret merging

pub mod imageset;
pub mod mirrorsets;
pub mod release;

use crate::bundle::manifest::{Image, Release};
use crate::error::Result;
use crate::oci::names::{valid_tag, ImageRef, TRANSPORT};
use crate::registry::mirror;

/// Where every `docker://` image of a bundle is mirrored: its source repository (as the
/// cluster names it, `quay.io/openshift-release-dev/ocp-v4.0-art-dev`) and the repository
/// at `mirror_host` (`HOST[:PORT]`) it was loaded into under `prefix`. Images from OCI
/// layouts have no source registry a cluster would pull from and are left out.
pub fn mappings(images: &[Image], mirror_host: &str, prefix: Option<&str>) -> Result<Vec<mirrorsets::Mapping>> {
    let mut out = Vec::new();
    for image in images.iter().filter(|i| i.source.starts_with(TRANSPORT)) {
        let source = ImageRef::parse(&image.source)?;
        let target = mirror::target(image, prefix)?;
        out.push(mirrorsets::Mapping {
            source: format!("{}/{}", source.registry, source.repository),
            mirror: format!("{mirror_host}/{}", target.repository),
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
pub fn release_tags(release: &Release, images: &[Image], prefix: Option<&str>) -> Result<Vec<ReleaseTag>> {
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
        let target = mirror::target(&images[image], prefix)?;
        let tag = format!("{}-{arch}-{}", release.version, component.name);
        if !valid_tag(&tag) {
            return Err(crate::error::usage(format!(
                "release {}: component {} gives tag '{tag}', which is not a valid tag",
                release.version, component.name
            )));
        }
        tags.push(ReleaseTag { image, repository: target.repository, tag });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::openshift::release::Component;

    fn image(source: &str, n: u8) -> Image {
        Image {
            source: source.into(),
            reference: None,
            digest: Digest::of(&[n]),
            media_type: crate::oci::OCI_MANIFEST.into(),
            size: 1,
            total_size: 1,
            platforms: vec!["linux/amd64".into()],
            blobs: vec![Digest::of(&[n])],
        }
    }

    #[test]
    fn mappings_name_source_and_mirror_repositories() {
        let d = Digest::of(b"x");
        let images = vec![
            image("docker://quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64", 1),
            image(&format!("docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@{d}"), 2),
            image("docker://nginx", 3),
            image("oci:/srv/layout:app", 4),
        ];
        let m = mappings(&images, "mirror.example:8443", Some("ocp")).unwrap();
        let got: Vec<_> = m.iter().map(|m| (m.source.as_str(), m.mirror.as_str(), m.by_tag)).collect();
        assert_eq!(
            got,
            [
                (
                    "quay.io/openshift-release-dev/ocp-release",
                    "mirror.example:8443/ocp/openshift-release-dev/ocp-release",
                    true
                ),
                (
                    "quay.io/openshift-release-dev/ocp-v4.0-art-dev",
                    "mirror.example:8443/ocp/openshift-release-dev/ocp-v4.0-art-dev",
                    false
                ),
                ("docker.io/library/nginx", "mirror.example:8443/ocp/nginx", true),
            ]
        );
    }

    #[test]
    fn object_names_are_valid_kubernetes_names() {
        assert_eq!(object_name("ocp-4.16"), "ocp-4.16");
        assert_eq!(object_name("Site_Mirror"), "site-mirror");
        assert_eq!(object_name("_x_"), "x");
        assert_eq!(object_name("__"), "airlift");
    }

    #[test]
    fn release_tags_follow_oc_adm_release_mirror() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let images = vec![
            image("docker://q.io/ocp/release:4.16.3-x86_64", 1),
            image(&format!("docker://q.io/ocp/art-dev@{a}"), 2),
            image(&format!("docker://q.io/ocp/art-dev@{b}"), 3),
        ];
        let mut release = Release {
            source: images[0].source.clone(),
            version: "4.16.3".into(),
            digest: images[0].digest.clone(),
            architectures: vec!["x86_64".into()],
            components: vec![
                Component { name: "cli".into(), image: format!("q.io/ocp/art-dev@{a}") },
                Component { name: "installer".into(), image: format!("q.io/ocp/art-dev@{b}") },
            ],
            signatures: vec![],
        };
        let tags = release_tags(&release, &images, None).unwrap();
        assert_eq!(
            tags,
            [
                ReleaseTag { image: 1, repository: "ocp/art-dev".into(), tag: "4.16.3-x86_64-cli".into() },
                ReleaseTag { image: 2, repository: "ocp/art-dev".into(), tag: "4.16.3-x86_64-installer".into() },
            ]
        );
        release.architectures = vec!["x86_64".into(), "aarch64".into()];
        assert_eq!(release_tags(&release, &images, None).unwrap()[0].tag, "4.16.3-multi-cli");
        release.components[0].image = "q.io/ocp/art-dev@sha256:".to_string() + &"0".repeat(64);
        assert!(release_tags(&release, &images, None).unwrap_err().to_string().contains("component cli"));
    }
}
