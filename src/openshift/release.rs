//! OpenShift release payloads: a release image carries, in one of its layers,
//! `release-manifests/image-references` (an ImageStream naming every component image by
//! digest) and `release-manifests/release-metadata` (the version). Packing a release
//! means packing the release image and every component it names.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::bundle::manifest::Component;
use crate::error::{usage, Error, Result};

const REFERENCES: &str = "release-manifests/image-references";
const METADATA: &str = "release-manifests/release-metadata";
/// The installer's boot images ConfigMap; its `data.stream` JSON names the KubeVirt
/// container image of each architecture (`architectures.ARCH.images.kubevirt.digest-ref`).
const BOOTIMAGES: &str = "release-manifests/0000_50_installer_coreos-bootimages.yaml";
/// Either file is a few hundred KiB in a real payload; more is not a release payload.
const MAX_METADATA_FILE: u64 = 16 << 20;

/// What a release payload says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub version: String,
    /// Every component, in image-references order.
    pub components: Vec<Component>,
    /// The boot images ConfigMap as found, read only when asked ([`kubevirt_images`]).
    pub bootimages: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct ImageStream {
    kind: String,
    metadata: Option<ObjectMeta>,
    spec: ImageStreamSpec,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ImageStreamSpec {
    #[serde(default)]
    tags: Vec<TagReference>,
}

#[derive(Deserialize)]
struct TagReference {
    name: String,
    from: Option<ObjectReference>,
}

#[derive(Deserialize)]
struct ObjectReference {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
struct Metadata {
    version: String,
}

/// Read the payload from the release image's layers (gzip, zstd or plain tars, in image
/// order): the last layer that has a file wins, as when the image is run.
pub fn read_payload(release: &str, layers: &[impl AsRef<Path>]) -> Result<Payload> {
    let (mut references, mut metadata, mut bootimages) = (None, None, None);
    for layer in layers.iter().rev() {
        if references.is_some() && metadata.is_some() && bootimages.is_some() {
            break;
        }
        let found = files_in_layer(layer.as_ref(), &[REFERENCES, METADATA, BOOTIMAGES])?;
        for (name, bytes) in found {
            match name.as_str() {
                REFERENCES if references.is_none() => references = Some(bytes),
                METADATA if metadata.is_none() => metadata = Some(bytes),
                BOOTIMAGES if bootimages.is_none() => bootimages = Some(bytes),
                _ => {}
            }
        }
    }
    let references = references.ok_or_else(|| {
        usage(format!("{release}: no {REFERENCES} in any layer: this is not an OpenShift release image"))
    })?;
    let stream: ImageStream = serde_json::from_slice(&references)
        .map_err(|e| usage(format!("{release}: {REFERENCES} is not an ImageStream: {e}")))?;
    if stream.kind != "ImageStream" {
        return Err(usage(format!("{release}: {REFERENCES} is a {}, not an ImageStream", stream.kind)));
    }
    let version = match metadata {
        Some(bytes) => {
            serde_json::from_slice::<Metadata>(&bytes)
                .map_err(|e| usage(format!("{release}: {METADATA} has no version: {e}")))?
                .version
        }
        None => stream.metadata.and_then(|m| m.name).ok_or_else(|| {
            usage(format!("{release}: neither {METADATA} nor the ImageStream's name gives the version"))
        })?,
    };
    let mut components = Vec::new();
    for tag in stream.spec.tags {
        let Some(from) = tag.from else {
            return Err(usage(format!("{release}: component {} has no image", tag.name)));
        };
        if from.kind != "DockerImage" {
            return Err(usage(format!(
                "{release}: component {} refers to a {}, not a DockerImage",
                tag.name, from.kind
            )));
        }
        if !from.name.contains("@sha256:") {
            return Err(usage(format!(
                "{release}: component {} is {}, not a reference by digest: a release pins every image",
                tag.name, from.name
            )));
        }
        components.push(Component { name: tag.name, image: from.name });
    }
    if components.is_empty() {
        return Err(usage(format!("{release}: {REFERENCES} lists no component")));
    }
    Ok(Payload { version, components, bootimages })
}

/// The KubeVirt container images (oc-mirror's `kubeVirtContainer`) the payload's boot
/// images ConfigMap names for `architectures` (release tag suffixes: `x86_64`, `s390x`…;
/// `multi` for every one), as components `kube-virt-container-ARCH`; an architecture
/// without one is passed over, as oc-mirror does. `release` names the errors.
pub fn kubevirt_images(release: &str, payload: &Payload, architectures: &[String]) -> Result<Vec<Component>> {
    let bad = |why: String| usage(format!("{release}: {BOOTIMAGES}: {why}"));
    let Some(bytes) = &payload.bootimages else {
        return Err(bad("not in the payload: this release names no KubeVirt container image".into()));
    };
    let map: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(bytes).map_err(|e| bad(format!("not a YAML ConfigMap: {e}")))?;
    let stream = map["data"]["stream"].as_str().ok_or_else(|| bad("no data.stream".into()))?;
    let stream: serde_json::Value =
        serde_json::from_str(stream).map_err(|e| bad(format!("data.stream is not JSON: {e}")))?;
    let listed = stream["architectures"].as_object().ok_or_else(|| bad("data.stream has no architectures".into()))?;
    let mut images = Vec::new();
    for (arch, entry) in listed {
        if !architectures.iter().any(|a| a == arch || a == "multi") {
            continue;
        }
        let Some(image) = entry["images"]["kubevirt"]["digest-ref"].as_str() else { continue };
        if !image.contains("@sha256:") {
            let (arch, image) = (crate::text::untrusted(arch), crate::text::untrusted(image));
            return Err(bad(format!("{arch}: the KubeVirt image {image} is not a reference by digest")));
        }
        images.push(Component { name: format!("kube-virt-container-{arch}"), image: image.to_string() });
    }
    Ok(images)
}

/// The contents of the files named `wanted` in a layer (compressed or not).
fn files_in_layer(path: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |e: std::io::Error| Error::io(path, e);
    let mut archive = crate::oci::layer::open_layer(path)?;
    let mut found = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
        if !wanted.contains(&name.as_str()) || !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > MAX_METADATA_FILE {
            return Err(usage(format!(
                "{}: {name} is {} bytes, too large for a release file",
                path.display(),
                entry.size()
            )));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(bad)?;
        found.push((name, bytes));
    }
    Ok(found)
}

/// The ImageStream and metadata a payload layer holds, for tests that build releases.
pub fn payload_files(version: &str, components: &[Component]) -> Vec<(String, Vec<u8>)> {
    let tags: Vec<serde_json::Value> = components
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "from": {"kind": "DockerImage", "name": c.image}}))
        .collect();
    let stream = serde_json::json!({
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": version, "creationTimestamp": null},
        "spec": {"lookupPolicy": {"local": false}, "tags": tags},
    });
    let metadata = serde_json::json!({"kind": "cincinnati-metadata-v0", "version": version, "previous": []});
    vec![
        (REFERENCES.to_string(), serde_json::to_vec_pretty(&stream).unwrap_or_default()),
        (METADATA.to_string(), serde_json::to_vec_pretty(&metadata).unwrap_or_default()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layer(dir: &Path, name: &str, files: &[(String, Vec<u8>)], gzip: bool) -> std::path::PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, path, &bytes[..]).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let out = dir.join(name);
        let bytes = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).unwrap();
            enc.finish().unwrap()
        } else {
            tar
        };
        std::fs::write(&out, bytes).unwrap();
        out
    }

    fn components(n: usize) -> Vec<Component> {
        (0..n)
            .map(|i| Component {
                name: format!("component-{i}"),
                image: format!("quay.example/ocp/art-dev@sha256:{}", &format!("{i:x}").repeat(64)[..64]),
            })
            .collect()
    }

    #[test]
    fn reads_references_and_version_from_the_last_layer_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let other = vec![("etc/os-release".to_string(), b"ID=rhel\n".to_vec())];
        let old = layer(dir.path(), "old", &payload_files("4.15.0", &components(2)), false);
        let base = layer(dir.path(), "base", &other, true);
        let new = layer(dir.path(), "new", &payload_files("4.16.3", &components(12)), true);
        let p = read_payload("rel", &[old, base, new]).unwrap();
        assert_eq!(p.version, "4.16.3");
        assert_eq!(p.components, components(12));
    }

    #[test]
    fn kubevirt_images_come_from_the_boot_images_config_map() {
        let dir = tempfile::tempdir().unwrap();
        let kv = |c: char| format!("quay.example/ocp/art-dev@sha256:{}", c.to_string().repeat(64));
        let stream = serde_json::json!({"stream": "rhcos", "architectures": {
            "x86_64": {"images": {"kubevirt": {"release": "416", "image": "q/kv", "digest-ref": kv('a')}}},
            "aarch64": {"images": {}},
            "s390x": {"images": {"kubevirt": {"digest-ref": kv('b')}}},
        }});
        let config_map = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coreos-bootimages\ndata:\n  stream: '{stream}'\n"
        );
        let mut files = payload_files("4.16.3", &components(1));
        files.push((BOOTIMAGES.to_string(), config_map.into_bytes()));
        let p = read_payload("rel", &[layer(dir.path(), "l", &files, true)]).unwrap();
        let names = |arches: &[&str]| -> Vec<(String, String)> {
            let arches: Vec<String> = arches.iter().map(|a| a.to_string()).collect();
            kubevirt_images("rel", &p, &arches).unwrap().into_iter().map(|c| (c.name, c.image)).collect()
        };
        assert_eq!(names(&["x86_64"]), [("kube-virt-container-x86_64".to_string(), kv('a'))]);
        assert_eq!(names(&["aarch64"]), []);
        assert_eq!(names(&["multi"]).len(), 2);

        let bare =
            read_payload("rel", &[layer(dir.path(), "b", &payload_files("4.16.3", &components(1)), true)]).unwrap();
        let e = kubevirt_images("rel", &bare, &["x86_64".to_string()]).unwrap_err().to_string();
        assert_eq!(e, format!("rel: {BOOTIMAGES}: not in the payload: this release names no KubeVirt container image"));
        let mut files = payload_files("4.16.3", &components(1));
        files.push((BOOTIMAGES.to_string(), b"data:\n  stream: '{\"architectures\": {\"x86_64\": {\"images\": {\"kubevirt\": {\"digest-ref\": \"q/kv:1\"}}}}}'\n".to_vec()));
        let by_tag = read_payload("rel", &[layer(dir.path(), "t", &files, true)]).unwrap();
        let e = kubevirt_images("rel", &by_tag, &["x86_64".to_string()]).unwrap_err().to_string();
        assert!(e.ends_with("x86_64: the KubeVirt image q/kv:1 is not a reference by digest"), "{e}");
    }

    #[test]
    fn refuses_images_that_are_not_release_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let plain = layer(dir.path(), "plain", &[("bin/sh".to_string(), b"#!".to_vec())], true);
        let e = read_payload("docker://q/app:1", &[plain]).unwrap_err().to_string();
        assert!(e.contains("not an OpenShift release image"), "{e}");

        let mut files = payload_files("4.16.3", &components(1));
        files[0].1 = br#"{"kind":"ImageStream","spec":{"tags":[{"name":"cli","from":{"kind":"DockerImage","name":"q/cli:latest"}}]}}"#.to_vec();
        let by_tag = layer(dir.path(), "tag", &files, true);
        let e = read_payload("rel", &[by_tag]).unwrap_err().to_string();
        assert!(e.contains("component cli") && e.contains("not a reference by digest"), "{e}");

        files[0].1 = b"not json".to_vec();
        let garbage = layer(dir.path(), "garbage", &files, true);
        assert!(read_payload("rel", &[garbage]).unwrap_err().to_string().contains("not an ImageStream"));
    }
}
