//! oc-mirror v2's delete file (`DeleteImageSetConfiguration`, `apiVersion:
//! mirror.openshift.io/v2alpha1`): the images `airlift prune` deletes.
//!
//! The `delete:` section names images as an image set's `mirror:` section does, and is read
//! by the same reader ([`crate::openshift::imageset`] with [`Purpose::Delete`]), so every
//! field means what it means there:
//! - `platform.release`, `platform.releases` (references, or `version:` expanded to
//!   `BASE:VERSION-ARCH` for each of `platform.architectures`);
//! - `platform.channels`: with no update graph on the far side, a channel selects the
//!   releases the destination holds whose version is within `minVersion`..`maxVersion`
//!   (without them: the channel's `X.Y`), for each of `platform.architectures`;
//! - `operators`: a catalog listed without packages deletes the catalog image;
//! - `additionalImages` (with `targetRepo`/`targetTag`: where the image was put).
//!
//! Refused, naming the field: what airlift cannot delete as written (a catalog's packages,
//! `platform.platforms`, `kubeVirtContainer`, an image's `platforms`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{usage, Result};
use crate::openshift::graph::{Channel, Version};
use crate::openshift::imageset::{self, Channels, Purpose};

/// What a delete file asks `prune` to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteSet {
    /// Release images, `docker://HOST/REPO:TAG|@DIGEST`, file order.
    pub releases: Vec<String>,
    /// `platform.channels`, with the architectures and the release base.
    pub channels: Channels,
    /// Catalog images deleted whole, `docker://…`.
    pub catalogs: Vec<String>,
    /// Additional images, `docker://…`.
    pub additional: Vec<String>,
    /// An additional image's `targetRepo`/`targetTag` target, `HOST/REPO[:TAG]`, by reference.
    pub targets: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Read and check a delete file; every error names the file and the field.
pub fn load(path: &Path) -> Result<DeleteSet> {
    let set = imageset::load_as(path, Purpose::Delete)?;
    from_imageset(set, &path.display().to_string())
}

/// Parse a delete document; `origin` (the file name) starts every error message.
pub fn parse(text: &str, origin: &str) -> Result<DeleteSet> {
    from_imageset(imageset::parse_as(text, origin, Purpose::Delete)?, origin)
}

fn from_imageset(set: imageset::ImageSet, origin: &str) -> Result<DeleteSet> {
    let refuse = |field: &str, why: &str| Err(usage(format!("{origin}: delete.{field}: {why}")));
    if !set.release_platforms.is_empty() {
        return refuse("platform.platforms", "not supported by prune; list the releases' architectures instead");
    }
    if !set.kube_virt.is_empty() {
        return refuse("platform.kubeVirtContainer", "not supported by prune; list the image under additionalImages");
    }
    if !set.platforms.is_empty() {
        return refuse("additionalImages", "platforms: prune deletes an image whole; remove platforms");
    }
    let mut catalogs = Vec::new();
    for (i, op) in set.operators.iter().enumerate() {
        if !op.packages.is_empty() || op.target_catalog.is_some() || op.target_tag.is_some() {
            return refuse(
                &format!("operators[{i}]"),
                "prune deletes a catalog image whole: list only its catalog (packages and targets are not supported)",
            );
        }
        catalogs.push(op.catalog.clone());
    }
    let mut warnings = set.warnings;
    if set.graph {
        warnings.push(format!("{origin}: delete.platform.graph: ignored: prune leaves the graph-data image"));
    }
    Ok(DeleteSet {
        releases: set.releases,
        channels: set.channels,
        catalogs,
        additional: set.additional,
        targets: set.targets,
        warnings,
    })
}

/// Whether `version` is a release `channel` selects offline: within its minVersion and
/// maxVersion, or, without either, of the `X.Y` its name ends in (`stable-4.16`).
pub fn channel_selects(channel: &Channel, version: &Version) -> bool {
    if channel.min.is_none() && channel.max.is_none() {
        let minor = channel.name.rsplit_once('-').map_or(channel.name.as_str(), |(_, v)| v);
        return version.to_string().strip_prefix(minor).is_some_and(|rest| rest.starts_with('.'));
    }
    channel.min.as_ref().map_or(true, |min| version >= min) && channel.max.as_ref().map_or(true, |max| version <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "kind: DeleteImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n";

    #[test]
    fn a_delete_file_names_releases_channels_catalogs_and_images() {
        let set = parse(
            &format!(
                "{HEADER}delete:\n  platform:\n    architectures: [amd64, arm64]\n    channels:\n      - name: stable-4.16\n        minVersion: 4.16.1\n        maxVersion: 4.16.3\n    releases:\n      - version: 4.15.2\n  operators:\n    - catalog: registry.example/ns/index:v4.16\n  additionalImages:\n    - name: quay.io/ns/app:1.0\n      targetRepo: other/app\n"
            ),
            "delete.yaml",
        )
        .unwrap();
        assert_eq!(
            set.releases,
            [
                "docker://quay.io/openshift-release-dev/ocp-release:4.15.2-x86_64",
                "docker://quay.io/openshift-release-dev/ocp-release:4.15.2-aarch64"
            ]
        );
        assert_eq!(set.channels.architectures, ["x86_64", "aarch64"]);
        assert_eq!(set.catalogs, ["docker://registry.example/ns/index:v4.16"]);
        assert_eq!(set.additional, ["docker://quay.io/ns/app:1.0"]);
        assert_eq!(set.targets["docker://quay.io/ns/app:1.0"], "quay.io/other/app:1.0");
        let channel = &set.channels.list[0];
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(channel_selects(channel, &v("4.16.2")));
        assert!(!channel_selects(channel, &v("4.16.4")));
        let open = Channel { name: "stable-4.16".into(), ..Channel::default() };
        assert!(channel_selects(&open, &v("4.16.9")));
        assert!(!channel_selects(&open, &v("4.17.0")) && !channel_selects(&open, &v("4.1.0")));
    }

    #[test]
    fn what_prune_cannot_do_as_written_is_refused_by_field() {
        let refusal = |body: &str| parse(&format!("{HEADER}{body}"), "delete.yaml").unwrap_err().to_string();
        assert_eq!(
            refusal("delete:\n  operators:\n    - catalog: r.example/i:1\n      packages: [{name: a}]\n"),
            "delete.yaml: delete.operators[0]: prune deletes a catalog image whole: list only its catalog (packages and targets are not supported)"
        );
        assert!(refusal("delete:\n  blockedImages: [{name: x}]\n")
            .starts_with("delete.yaml: delete.blockedImages: unknown field"));
        assert!(
            refusal("mirror:\n  additionalImages: [{name: a/b:1}]\n").starts_with("delete.yaml: mirror: unknown field")
        );
        assert_eq!(refusal("delete: {}\n").split(';').next(), Some("delete.yaml: delete: nothing to delete"));
        let kind =
            parse("kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\ndelete: {}\n", "d.yaml");
        assert!(kind.unwrap_err().to_string().contains("'ImageSetConfiguration' is not DeleteImageSetConfiguration"));
        let v1 =
            parse("kind: DeleteImageSetConfiguration\napiVersion: mirror.openshift.io/v1alpha2\ndelete: {}\n", "d");
        assert!(v1.unwrap_err().to_string().contains("use mirror.openshift.io/v2alpha1"));
    }
}
