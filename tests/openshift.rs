//! OpenShift releases end to end: a synthetic release payload (a release image whose
//! layer holds image-references for a dozen components, single and multi-arch) served by
//! Debian's docker-registry, packed with `--release` or an image set file, verified,
//! unpacked into airlift's registry, and pulled through the generated mirror sets.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlift::bundle::manifest::Component;
use airlift::openshift::release::payload_files;
use serde_json::Value;

use crate::common::cluster::{digest_mirrors, pack, pull_through, unpack_root, unpack_to, yaml};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, airlift, make_tar_layout, run_ok, sha256_hex, testdata};

pub(crate) const VERSION: &str = "4.16.3";

/// A release published in `dist`: 11 single-arch components and the multi-arch testdata
/// image, all in `ocp/art-dev` (as real releases keep them in one repository), and the
/// release image `ocp/release:VERSION-x86_64`. Components 0-5 and the multi-arch one are
/// the same in every release (so releases share blobs); the others differ by `seed`.
pub(crate) struct Release {
    pub(crate) components: Vec<Component>,
    /// `docker://…/ocp/release:VERSION-x86_64`
    pub(crate) reference: String,
    pub(crate) digest: String,
}

pub(crate) fn publish_release(dist: &Distribution, dir: &Path, version: &str, seed: usize) -> Release {
    let src = dir.join(format!("components-{version}"));
    let sizes: Vec<Vec<usize>> =
        (0..11).map(|i| vec![20_000 + i * 1000 + if i >= 6 { seed * 10 } else { 0 }, 3_000]).collect();
    let sizes: Vec<&[usize]> = sizes.iter().map(|v| &v[..]).collect();
    make_tar_layout(&src, &sizes);
    let mut components = Vec::new();
    for i in 0..11 {
        let name = format!("ocp/art-dev:{version}-c{i}");
        dist.push(&format!("oci:{}:img-{i}", src.display()), &name);
        let digest = dist.digest(&name);
        components
            .push(Component { name: format!("component-{i}"), image: format!("{}/ocp/art-dev@{digest}", dist.host()) });
    }
    let multi = format!("ocp/art-dev:{version}-multi");
    dist.push(&format!("oci:{}:multi", testdata("layout").display()), &multi);
    components.push(Component {
        name: "multi-arch-tool".into(),
        image: format!("{}/ocp/art-dev@{}", dist.host(), dist.digest(&multi)),
    });
    let layout = release_layout(&dir.join(format!("release-{version}")), version, &components);
    let tag = format!("ocp/release:{version}-x86_64");
    dist.push(&format!("oci:{}:release", layout.display()), &tag);
    let digest = dist.digest(&tag);
    Release { reference: dist.docker_ref(&tag), components, digest }
}

/// An OCI layout with one image `release`: a gzip layer holding release-manifests/.
fn release_layout(dir: &Path, version: &str, components: &[Component]) -> PathBuf {
    let payload = dir.join("payload");
    for (path, bytes) in payload_files(version, components) {
        let file = payload.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let layer = dir.join("layer.tar.gz");
    run_ok(Command::new("tar").arg("-czf").arg(&layer).arg("-C").arg(&payload).arg("release-manifests"));
    let layer = std::fs::read(&layer).unwrap();
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:".to_string() + &"0".repeat(64)]},
        "config": {"Labels": {"io.openshift.release": version}},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "release"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layout
}

#[test]
fn a_release_packed_with_every_component_resolves_through_the_digest_mirror_set() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let sig = tmp.path().join(format!("sha256={}", rel.digest.trim_start_matches("sha256:"))).join("signature-1");
    std::fs::create_dir_all(sig.parent().unwrap()).unwrap();
    std::fs::write(&sig, b"\x89gpg-signature-bytes\x00").unwrap();
    let bundle = tmp.path().join("bundle");
    let doc = pack(
        &dist,
        tmp.path(),
        &bundle,
        "ocp",
        &["--release".into(), rel.reference.clone(), "--release-signature".into(), sig.display().to_string()],
    );
    assert_eq!(doc["images"].as_array().unwrap().len(), 1 + rel.components.len(), "{doc}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(bundle.join("ocp.manifest.json")).unwrap()).unwrap();
    let r = &manifest["releases"][0];
    assert_eq!(r["version"], VERSION);
    assert_eq!(r["digest"], rel.digest.as_str());
    assert_eq!(r["architectures"], serde_json::json!(["x86_64"]));
    let names: Vec<&str> = r["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, rel.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>());
    airlift().arg("verify").arg(&bundle).arg("--key").arg(tmp.path().join("keys/site.pub")).assert().success();

    let mut reg = Registry::install();
    // A pull secret as console.redhat.com hands it out, and the mirror's credentials from
    // an auth file (the registry was installed before this unpack).
    let secret = tmp.path().join("pull-secret.json");
    std::fs::write(&secret, br#"{"auths":{"quay.io":{"auth":"b3BlbnNoaWZ0OnNlY3JldA==","email":"ops@example.com"}}}"#)
        .unwrap();
    let mirror_host = format!("localhost:{}", reg.port);
    let auth = crate::common::distribution::write_authfile(&tmp.path().join("mirror-auth"), &mirror_host, &reg.creds());
    let doc = unpack_root(
        tmp.path(),
        &bundle,
        &reg.root,
        &["--release-tags", "--merge-pull-secret", secret.to_str().unwrap(), "--authfile", auth.to_str().unwrap()],
    );
    let results = PathBuf::from(doc["results"]["dir"].as_str().expect("results.dir in the unpack document"));
    let merged: Value = serde_json::from_slice(&std::fs::read(results.join("pull-secret.json")).unwrap()).unwrap();
    assert_eq!(
        merged["auths"]["quay.io"],
        serde_json::json!({"auth": "b3BlbnNoaWZ0OnNlY3JldA==", "email": "ops@example.com"})
    );
    use base64::Engine;
    let mirror_auth = merged["auths"][mirror_host.as_str()]["auth"].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(mirror_auth).unwrap(), reg.creds().as_bytes());
    assert_eq!(merged["auths"].as_object().unwrap().len(), 2);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(results.join("pull-secret.json")).unwrap().permissions().mode() & 0o777, 0o600);
    reg.serve(&[]);
    let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
    let host = dist.host();
    let sources: Vec<&str> = idms.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(sources, [format!("{host}/ocp/art-dev"), format!("{host}/ocp/release")]);
    for c in &rel.components {
        pull_through(&reg, &idms, &c.image);
    }
    pull_through(&reg, &idms, &format!("{host}/ocp/release@{}", rel.digest));

    // The tag mirror set covers the release image (referenced by tag), not the components.
    let itms = yaml(&results.join("imagetagmirrorset.yaml"));
    assert_eq!(itms["kind"].as_str(), Some("ImageTagMirrorSet"));
    assert_eq!(itms["spec"]["imageTagMirrors"][0]["source"].as_str(), Some(format!("{host}/ocp/release").as_str()));
    assert_eq!(itms["spec"]["imageTagMirrors"].as_sequence().unwrap().len(), 1);
    let icsp = yaml(&results.join("imagecontentsourcepolicy.yaml"));
    assert_eq!(icsp["apiVersion"].as_str(), Some("operator.openshift.io/v1alpha1"));
    assert_eq!(icsp["kind"].as_str(), Some("ImageContentSourcePolicy"));
    assert_eq!(icsp["spec"]["repositoryDigestMirrors"].as_sequence().unwrap().len(), 2);
    let snippet = yaml(&results.join("install-config-snippet.yaml"));
    assert_eq!(snippet["imageContentSources"].as_sequence().unwrap().len(), 2);
    assert_eq!(snippet["imageDigestSources"].as_sequence().unwrap().len(), 2);

    // The signature travelled and became the ConfigMap the cluster-version operator reads.
    let hex = rel.digest.trim_start_matches("sha256:");
    let cm = yaml(&results.join("release-signatures.yaml"));
    assert_eq!(cm["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(cm["metadata"]["namespace"].as_str(), Some("openshift-config-managed"));
    assert_eq!(cm["metadata"]["name"].as_str(), Some(format!("sha256-{hex}").as_str()));
    assert!(cm["metadata"]["labels"].get("release.openshift.io/verification-signatures").is_some());
    let sig64 = cm["binaryData"][format!("sha256-{hex}-1").as_str()].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(sig64).unwrap(), std::fs::read(&sig).unwrap());

    // --release-tags: every component is also tagged VERSION-ARCH-NAME, as oc adm release
    // mirror does.
    for c in &rel.components {
        let digest = c.image.split_once('@').unwrap().1;
        let reference = format!("ocp/art-dev:{VERSION}-x86_64-{}", c.name);
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref(&reference));
        let raw = cmd.output().unwrap();
        assert!(raw.status.success(), "{reference}: {}", String::from_utf8_lossy(&raw.stderr));
        assert_eq!(format!("sha256:{}", sha256_hex(&raw.stdout)), digest, "{reference}");
    }
}

/// The `docker://` sources a pack put in its bundle.
fn packed_sources(doc: &Value) -> Vec<String> {
    let mut s: Vec<String> =
        doc["images"].as_array().unwrap().iter().map(|i| i["source"].as_str().unwrap().into()).collect();
    s.sort();
    s
}

#[test]
fn an_image_set_file_packs_releases_and_additional_images_but_not_blocked_ones() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:app-00", layout.display()), "extra/app:1");
    dist.push(&format!("oci:{}:app-01", layout.display()), "extra/blocked:1");
    let host = dist.host();
    let config = tmp.path().join("imageset.yaml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v1alpha2\n\
                 storageConfig:\n  local:\n    path: ./metadata\n\
                 mirror:\n  platform:\n    architectures: [amd64]\n    releaseImageBase: {host}/ocp/release\n\
                 \x20   releases:\n      - version: {VERSION}\n\
                 \x20 additionalImages:\n    - name: {host}/extra/app:1\n    - name: {host}/extra/blocked:1\n\
                 \x20 blockedImages:\n    - name: {host}/extra/blocked\n{extra}"
            ),
        )
        .unwrap()
    };
    write("");
    let doc =
        pack(&dist, tmp.path(), &tmp.path().join("bundle"), "set", &["--config".into(), config.display().to_string()]);
    let mut want: Vec<String> = rel.components.iter().map(|c| format!("docker://{}", c.image)).collect();
    want.push(rel.reference.clone());
    want.push(format!("docker://{host}/extra/app:1"));
    want.sort();
    assert_eq!(packed_sources(&doc), want);

    // Sections airlift does not mirror are refused by name, never skipped.
    write("  helm:\n    repositories: []\n");
    let o = airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(tmp.path().join("keys/site.key"))
        .arg("--out")
        .arg(tmp.path().join("refused"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mirror.helm"), "{err}");
    assert!(!tmp.path().join("refused").join("set.manifest.json").exists());
}

#[test]
fn a_second_release_shares_every_common_blob_and_both_stay_pullable() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let first = publish_release(&dist, tmp.path(), "4.16.3", 1);
    let second = publish_release(&dist, tmp.path(), "4.16.4", 2);
    let b1 = tmp.path().join("b1");
    let b2 = tmp.path().join("b2");
    pack(&dist, tmp.path(), &b1, "ocp-4-16-3", &["--release".into(), first.reference.clone()]);
    pack(&dist, tmp.path(), &b2, "ocp-4-16-4", &["--release".into(), second.reference.clone()]);
    let blobs = |bundle: &Path, name: &str| -> std::collections::BTreeSet<String> {
        let m: Value =
            serde_json::from_slice(&std::fs::read(bundle.join(format!("{name}.manifest.json"))).unwrap()).unwrap();
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "blob")
            .map(|e| e["digest"].as_str().unwrap().into())
            .collect()
    };
    let (s1, s2) = (blobs(&b1, "ocp-4-16-3"), blobs(&b2, "ocp-4-16-4"));
    let common_blobs = s1.intersection(&s2).count();
    assert!(common_blobs >= 12, "the releases share only {common_blobs} blobs");
    assert!(s1.len() > common_blobs && s2.len() > common_blobs);

    let mut reg = Registry::install();
    let d1 = unpack_root(tmp.path(), &b1, &reg.root, &[]);
    let d2 = unpack_root(tmp.path(), &b2, &reg.root, &[]);
    // Stored once: the registry's blob store holds the union, nothing twice.
    let stored = std::fs::read_dir(reg.root.join("storage/blobs/sha256")).unwrap().count();
    assert_eq!(stored, s1.union(&s2).count());
    reg.serve(&[]);
    for (doc, rel) in [(d1, &first), (d2, &second)] {
        let results = PathBuf::from(doc["results"]["dir"].as_str().unwrap());
        let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
        for c in &rel.components {
            pull_through(&reg, &idms, &c.image);
        }
    }
}

#[test]
fn a_release_pushed_into_another_registry_gets_mirror_sets_and_release_tags() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let Some(mirror) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let bundle = tmp.path().join("bundle");
    pack(&dist, tmp.path(), &bundle, "ocp", &["--release".into(), rel.reference.clone()]);
    let work = tmp.path().join("to");
    unpack_to(tmp.path(), &bundle, &mirror, "mirror", &work, &["--release-tags"]);
    let results = work.join("results");
    let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
    let want = format!("{}/mirror/ocp/art-dev", mirror.host());
    assert!(
        idms.iter().any(|(s, m)| s == &format!("{}/ocp/art-dev", dist.host()) && m == std::slice::from_ref(&want)),
        "{idms:?}"
    );
    for c in &rel.components {
        let digest = c.image.split_once('@').unwrap().1;
        assert_eq!(mirror.digest(&format!("mirror/ocp/art-dev@{digest}")), digest);
        assert_eq!(mirror.digest(&format!("mirror/ocp/art-dev:{VERSION}-x86_64-{}", c.name)), digest);
    }
}

#[test]
fn a_release_from_an_oci_layout_packs_its_components_from_the_registry() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    // The release image as an OCI layout on disk (as `oc adm release mirror --to-dir`
    // leaves it); its components still come from the registry.
    let layout = tmp.path().join(format!("release-{VERSION}/layout"));
    let doc = pack(
        &dist,
        tmp.path(),
        &tmp.path().join("bundle"),
        "ocp",
        &["--release".into(), format!("oci:{}:release", layout.display())],
    );
    let mut want: Vec<String> = rel.components.iter().map(|c| format!("docker://{}", c.image)).collect();
    want.push(format!("oci:{}:release", layout.display()));
    want.sort();
    assert_eq!(packed_sources(&doc), want);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("bundle/ocp.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["releases"][0]["version"], VERSION);
    assert_eq!(manifest["releases"][0]["digest"], rel.digest.as_str());

    // An image that is not a release payload is refused, naming what is missing.
    let o = airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(tmp.path().join("keys/site.key"))
        .arg("--out")
        .arg(tmp.path().join("refused"))
        .arg("--release")
        .arg(format!("oci:{}:app-00", testdata("layout").display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an OpenShift release image"));
}

#[test]
fn a_blocked_pattern_matching_a_release_component_refuses_the_pack_naming_it() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let digest = rel.components[3].image.split_once('@').unwrap().1;
    let config = tmp.path().join("imageset.yaml");
    // Unanchored, over the full reference with its digest: it finds component-3 alone.
    std::fs::write(
        &config,
        format!(
            "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n\
             mirror:\n  platform:\n    releases: ['{}']\n  blockedImages:\n    - name: 'art-dev@{}'\n",
            rel.reference,
            &digest[..20]
        ),
    )
    .unwrap();
    let err = common::cluster::pack_refused(&dist, tmp.path(), &config);
    assert!(err.contains(&format!("blockedImages blocks component-3 ({})", rel.components[3].image)), "{err}");
}

#[test]
fn kubevirt_container_packs_the_image_the_boot_images_config_map_names_as_release_content() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let host = dist.host();
    let kubevirt = dist.push(&format!("oci:{}:app-01", testdata("layout").display()), "ocp/kubevirt:1");
    let kubevirt = format!("{host}/ocp/kubevirt@{kubevirt}");
    // The release's payload layer takes every file under release-manifests/.
    let manifests = tmp.path().join(format!("release-{VERSION}/payload/release-manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    let stream = serde_json::json!({"architectures": {
        "x86_64": {"images": {"kubevirt": {"digest-ref": kubevirt}}},
        "aarch64": {"images": {}},
    }});
    std::fs::write(
        manifests.join("0000_50_installer_coreos-bootimages.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\ndata:\n  stream: '{stream}'\n"),
    )
    .unwrap();
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let config = tmp.path().join("imageset.yaml");
    let write = |blocked: &str| {
        std::fs::write(
            &config,
            format!(
                "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n\
                 mirror:\n  platform:\n    release: {}\n    kubeVirtContainer: true\n{blocked}",
                rel.reference
            ),
        )
        .unwrap()
    };
    write("");
    let bundle = tmp.path().join("bundle");
    let doc = pack(&dist, tmp.path(), &bundle, "set", &["--config".into(), config.display().to_string()]);
    assert!(packed_sources(&doc).contains(&format!("docker://{kubevirt}")), "{doc}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(bundle.join("set.manifest.json")).unwrap()).unwrap();
    let last = manifest["releases"][0]["components"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, serde_json::json!({"name": "kube-virt-container-x86_64", "image": kubevirt}));

    // It is release content: a blocked pattern matching it refuses the pack naming it.
    write("  blockedImages:\n    - name: '/ocp/kubevirt@'\n");
    let err = common::cluster::pack_refused(&dist, tmp.path(), &config);
    assert!(err.contains(&format!("blockedImages blocks kube-virt-container-x86_64 ({kubevirt})")), "{err}");
}

#[test]
fn platform_platforms_keep_only_those_platforms_of_the_release_components() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let config = tmp.path().join("imageset.yaml");
    std::fs::write(
        &config,
        format!(
            "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n\
             mirror:\n  platform:\n    release: {}\n    platforms: [{{os: linux, architecture: arm64}}]\n",
            rel.reference
        ),
    )
    .unwrap();
    let bundle = tmp.path().join("bundle");
    pack(&dist, tmp.path(), &bundle, "set", &["--config".into(), config.display().to_string()]);
    let list = airlift().arg("list").arg(&bundle).arg("--json").output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let multi = &rel.components.last().unwrap().image;
    let image =
        listed["images"].as_array().unwrap().iter().find(|i| i["source"] == format!("docker://{multi}")).unwrap();
    assert_eq!(image["platforms"], serde_json::json!(["linux/arm64/v8"]), "{image}");
    assert_eq!(Some(image["digest"].as_str().unwrap()), multi.split_once('@').map(|(_, d)| d), "the original index");
}
