//! The rest of the v2alpha1 image set file end to end: additional images packed from
//! Debian's docker-registry land at their targetRepo/targetTag after `unpack --root`, and
//! the generated mirror sets map the source repositories to those targets; blockedImages
//! entries are regular expressions.

use std::path::{Path, PathBuf};

use crate::common::cluster::{digest_mirrors, pack, pack_refused, pull_through, unpack_root, yaml};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, sha256_hex, testdata};

/// An image set file at `DIR/imageset.yaml` with `mirror:` body `mirror`.
fn write_config(dir: &Path, mirror: &str) -> PathBuf {
    let config = dir.join("imageset.yaml");
    std::fs::write(
        &config,
        format!("kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n{mirror}"),
    )
    .unwrap();
    config
}

#[test]
fn additional_images_land_at_their_target_and_blocked_patterns_are_regular_expressions() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:app-00", layout.display()), "extra/app:1");
    let tool = dist.push(&format!("oci:{}:app-01", layout.display()), "extra/tool:1");
    dist.push(&format!("oci:{}:app-00", layout.display()), "db/mysql-server:8");
    let host = dist.host();
    let config = write_config(
        tmp.path(),
        &format!(
            "  additionalImages:\n\
             \x20   - {{name: {host}/extra/app:1, targetRepo: moved/app}}\n\
             \x20   - {{name: {host}/extra/tool:1, targetTag: v9}}\n\
             \x20   - {{name: {host}/db/mysql-server:8}}\n\
             \x20 blockedImages:\n    - name: '.*/mysql.*'\n"
        ),
    );
    let bundle = tmp.path().join("bundle");
    let doc = pack(&dist, tmp.path(), &bundle, "set", &["--config".into(), config.display().to_string()]);
    let mut sources: Vec<&str> =
        doc["images"].as_array().unwrap().iter().map(|i| i["source"].as_str().unwrap()).collect();
    sources.sort();
    assert_eq!(sources, [format!("docker://{host}/extra/app:1"), format!("docker://{host}/extra/tool:1")]);

    let mut reg = Registry::install();
    let unpacked = unpack_root(tmp.path(), &bundle, &reg.root, &[]);
    reg.serve(&[]);
    // Where they land: the target repository with the source's tag, the source's
    // repository with the target tag.
    for (name, digest) in [("moved/app:1", dist.digest("extra/app:1")), ("extra/tool:v9", tool.clone())] {
        let mut cmd = reg.skopeo("inspect");
        let raw = cmd.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref(name)).output().unwrap();
        assert!(raw.status.success(), "{name}: {}", String::from_utf8_lossy(&raw.stderr));
        assert_eq!(format!("sha256:{}", sha256_hex(&raw.stdout)), digest, "{name}");
    }
    // What the cluster is told: the source repository is mirrored at the target one.
    let results = Path::new(unpacked["results"]["dir"].as_str().unwrap()).to_path_buf();
    let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
    let mirror = reg.host();
    assert_eq!(
        idms,
        [
            (format!("{host}/extra/app"), vec![format!("{mirror}/moved/app")]),
            (format!("{host}/extra/tool"), vec![format!("{mirror}/extra/tool")]),
        ]
    );
    pull_through(&reg, &idms, &format!("{host}/extra/app@{}", dist.digest("extra/app:1")));
    let itms = yaml(&results.join("imagetagmirrorset.yaml"));
    assert_eq!(itms["spec"]["imageTagMirrors"][0]["source"].as_str(), Some(format!("{host}/extra/app").as_str()));
    assert_eq!(itms["spec"]["imageTagMirrors"][0]["mirrors"][0].as_str(), Some(format!("{mirror}/moved/app").as_str()));

    // `.*` blocks everything: nothing is left to mirror, exit 2.
    let config = write_config(
        tmp.path(),
        &format!("  additionalImages: [{{name: {host}/extra/app:1}}]\n  blockedImages: [{{name: '.*'}}]\n"),
    );
    let err = pack_refused(&dist, tmp.path(), &config);
    assert!(err.contains("mirror: nothing to mirror (every additional image is blocked)"), "{err}");
    // An invalid pattern is refused naming the entry.
    let config = write_config(
        tmp.path(),
        &format!(
            "  additionalImages: [{{name: {host}/extra/app:1}}]\n  blockedImages: [{{name: x}}, {{name: '[a'}}]\n"
        ),
    );
    let err = pack_refused(&dist, tmp.path(), &config);
    assert!(err.contains("mirror.blockedImages[1].name: '[a' is not a valid regular expression"), "{err}");
}

#[test]
fn an_additional_image_keeps_only_its_own_platforms_and_its_original_index() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    let index = dist.push(&format!("oci:{}:multi", layout.display()), "extra/multi:1");
    dist.push(&format!("oci:{}:multi", layout.display()), "extra/all:1");
    let host = dist.host();
    let config = write_config(
        tmp.path(),
        &format!(
            "  additionalImages:\n\
             \x20   - name: {host}/extra/multi:1\n      platforms: [{{os: linux, architecture: arm64}}]\n\
             \x20   - name: {host}/extra/all:1\n"
        ),
    );
    let bundle = tmp.path().join("bundle");
    pack(&dist, tmp.path(), &bundle, "set", &["--config".into(), config.display().to_string()]);
    let list = common::airlift().arg("list").arg(&bundle).arg("--json").output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let platforms = |source: &str| {
        let image = listed["images"].as_array().unwrap().iter().find(|i| i["source"] == source).unwrap();
        assert_eq!(image["digest"].as_str(), Some(index.as_str()), "{source}: the original index digest is kept");
        image["platforms"].clone()
    };
    assert_eq!(platforms(&format!("docker://{host}/extra/multi:1")), serde_json::json!(["linux/arm64/v8"]));
    assert_eq!(
        platforms(&format!("docker://{host}/extra/all:1")),
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );

    // An index with none of the platforms is refused naming the image, as --platform does.
    let config = write_config(
        tmp.path(),
        &format!("  additionalImages:\n    - name: {host}/extra/multi:1\n      platforms: ['linux/s390x']\n"),
    );
    let err = pack_refused(&dist, tmp.path(), &config);
    assert!(err.contains(&format!("{host}/extra/multi:1: no manifest for the platforms asked for")), "{err}");
}
