//! Pack straight from a registry: Debian's docker-registry (CNCF distribution) with TLS
//! and htpasswd on loopback as the source.

use crate::common::distribution::Distribution;
use crate::common::{testdata, testdata_digest};

#[test]
fn the_distribution_harness_serves_pushed_images_over_tls_with_auth() {
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:multi", layout.display()), "ns/multi:1");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let want = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dist.digest("ns/multi:1"), want);
}

fn pack_from(dist: &Distribution, dir: &std::path::Path, sources: &[String]) -> assert_cmd::assert::Assert {
    dist.pack_cmd(dir)
        .args(["--volume-size", "64KiB", "--chunk-size", "16KiB", "--cache"])
        .arg(dir.join("cache"))
        .args(sources)
        .assert()
}

#[test]
fn pack_from_a_registry_then_verify_and_unpack_keeps_every_digest() {
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    for r in ["multi", "app-00", "app-01"] {
        dist.push(&format!("oci:{}:{r}", layout.display()), &format!("ns/{r}:1.0"));
    }
    let tmp = crate::common::tempdir();
    let sources: Vec<String> =
        ["multi", "app-00", "app-01"].iter().map(|r| dist.docker_ref(&format!("ns/{r}:1.0"))).collect();
    pack_from(&dist, tmp.path(), &sources).success();
    let bundle = tmp.path().join("bundle");
    let public = tmp.path().join("keys/site.pub");
    crate::common::airlift().arg("verify").arg(&bundle).arg("--key").arg(&public).assert().code(0);
    let list = crate::common::airlift().arg("list").arg(&bundle).arg("--json").assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&list.get_output().stdout).unwrap();
    for (i, r) in ["multi", "app-00", "app-01"].iter().enumerate() {
        assert_eq!(doc["images"][i]["digest"], testdata_digest(r).as_str(), "{r}");
        assert_eq!(doc["images"][i]["source"], sources[i].as_str());
    }
    let out = tmp.path().join("site");
    crate::common::airlift()
        .arg("unpack")
        .arg(&bundle)
        .arg("--key")
        .arg(&public)
        .arg("--layout")
        .arg(&out)
        .assert()
        .code(0);
    // Every blob of the source came across byte for byte.
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let got = std::fs::read(out.join("blobs/sha256").join(&name)).unwrap_or_else(|_| panic!("blob {name} missing"));
        assert_eq!(crate::common::sha256_hex(&got), name);
    }
}

#[test]
fn wrong_credentials_unknown_images_and_unknown_hosts_exit_2_naming_the_reference() {
    let Some(dist) = Distribution::start() else { return };
    dist.push(&format!("oci:{}:app-00", testdata("layout").display()), "ns/app:1");
    let tmp = crate::common::tempdir();
    // Unknown image.
    let missing = dist.docker_ref("ns/nothing:here");
    let a = pack_from(&dist, tmp.path(), std::slice::from_ref(&missing)).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("ns/nothing"), "{err}");
    // Wrong credentials.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("dist:wrong-password");
    std::fs::write(bad.join("auth.json"), serde_json::json!({"auths": {dist.host(): {"auth": auth}}}).to_string())
        .unwrap();
    let (key, _) = crate::common::keygen(&bad.join("keys"), "site");
    let a = crate::common::airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(bad.join("bundle"))
        .arg("--authfile")
        .arg(bad.join("auth.json"))
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(bad.join("cache"))
        .arg(dist.docker_ref("ns/app:1"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_lowercase();
    assert!(
        err.contains("ns/app") && (err.contains("unauthorized") || err.contains("credentials") || err.contains("401")),
        "{err}"
    );
    // Unknown host.
    let a = pack_from(&dist, &tmp.path().join("h"), &["docker://no-such-host.invalid/ns/app:1".to_string()]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

fn pack_json(dist: &Distribution, dir: &std::path::Path, extra: &[&str], sources: &[String]) -> serde_json::Value {
    let a = dist.pack_cmd(dir).arg("--json").args(extra).args(sources).assert().success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

#[test]
fn a_rerun_fetches_only_the_blobs_missing_from_the_cache() {
    let Some(dist) = Distribution::start() else { return };
    dist.push(&format!("oci:{}:app-01", testdata("layout").display()), "ns/app:1");
    let tmp = crate::common::tempdir();
    let cache = tmp.path().join("cache");
    let source = vec![dist.docker_ref("ns/app:1")];
    let cache_arg = ["--cache", cache.to_str().unwrap()];
    let first = pack_json(&dist, &tmp.path().join("a"), &cache_arg, &source);
    let total = first["fetch"]["fetched"].as_u64().unwrap();
    assert!(total >= 4, "{first}");
    // Two blobs go missing from the cache (as after a run killed before fetching them).
    let blobs = cache.join("blobs/sha256");
    let mut names: Vec<_> = std::fs::read_dir(&blobs).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.iter().take(2) {
        std::fs::remove_file(p).unwrap();
    }
    let second = pack_json(&dist, &tmp.path().join("b"), &cache_arg, &source);
    assert_eq!(second["fetch"]["fetched"].as_u64().unwrap(), 2, "{second}");
    assert_eq!(second["fetch"]["cached"].as_u64().unwrap(), total - 2, "{second}");
    // Same content, so the same images.
    assert_eq!(first["images"], second["images"]);
}

#[test]
fn platform_filter_packs_only_that_platforms_content() {
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:multi", layout.display()), "ns/multi:1");
    let tmp = crate::common::tempdir();
    let cache = tmp.path().join("cache");
    let doc = pack_json(
        &dist,
        tmp.path(),
        &["--cache", cache.to_str().unwrap(), "--platform", "linux/amd64"],
        &[dist.docker_ref("ns/multi:1")],
    );
    assert_eq!(doc["images"][0]["digest"], testdata_digest("multi").as_str(), "the original index digest is kept");
    let list = crate::common::airlift().arg("list").arg(tmp.path().join("bundle")).arg("--json").assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&list.get_output().stdout).unwrap();
    assert_eq!(listed["images"][0]["platforms"], serde_json::json!(["linux/amd64"]));
    // The index's arm64 manifest and its layers are not in the bundle.
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(testdata_digest("multi").trim_start_matches("sha256:")))
            .unwrap(),
    )
    .unwrap();
    let arm = index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "arm64").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("bundle/airlift.manifest.json")).unwrap()).unwrap();
    let entries: Vec<&str> =
        manifest["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    let arm_path = format!("blobs/sha256/{}", arm["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    assert!(!entries.contains(&arm_path.as_str()), "arm64 manifest was packed");
}

#[test]
fn a_platform_filtered_index_keeps_its_digest_and_resolves_for_amd64_after_unpack() {
    let Some(dist) = Distribution::start() else { return };
    dist.push(&format!("oci:{}:multi", testdata("layout").display()), "ns/multi:1");
    let tmp = crate::common::tempdir();
    let cache = tmp.path().join("cache");
    pack_json(
        &dist,
        tmp.path(),
        &["--cache", cache.to_str().unwrap(), "--platform", "linux/amd64"],
        &[dist.docker_ref("ns/multi:1")],
    );
    let mut reg = crate::common::registry::Registry::install();
    crate::common::airlift()
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .arg("--root")
        .arg(&reg.root)
        .assert()
        .code(0);
    reg.serve(&[]);
    // The original index, byte for byte...
    let mut raw = reg.skopeo("inspect");
    raw.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref("ns/multi:1"));
    let out = raw.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(format!("sha256:{}", crate::common::sha256_hex(&out.stdout)), testdata_digest("multi"));
    // ...resolves for linux/amd64 pulls, and not for the platform left out.
    let pull = |arch: &str| {
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["--override-os", "linux", "--override-arch", arch, "copy", "--quiet"])
            .args(reg.skopeo_src_args())
            .arg(reg.docker_ref("ns/multi:1"))
            .arg(format!("oci:{}:{arch}", tmp.path().join("pulled").display()));
        cmd.output().unwrap()
    };
    let amd = pull("amd64");
    assert!(amd.status.success(), "amd64 pull: {}", String::from_utf8_lossy(&amd.stderr));
    assert!(!pull("arm64").status.success(), "arm64 was not packed, yet it pulled");
}
