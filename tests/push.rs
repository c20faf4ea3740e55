//! `airlift unpack --to docker://…`: pushing a bundle into an existing registry (Debian's
//! docker-registry, TLS and htpasswd), checked with skopeo.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::distribution::Distribution;
use crate::common::{airlift, keygen, tempdir, testdata, testdata_digest};

const REFS: [&str; 4] = ["app-00", "app-00-latest", "app-01", "multi"];

/// Pack the testdata layout into DIR/bundle; returns (bundle, public key).
fn pack(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public) = keygen(&dir.join("keys"), "site");
    let bundle = dir.join("bundle");
    airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .arg(format!("oci:{}", testdata("layout").display()))
        .assert()
        .success();
    (bundle, public)
}

/// `unpack BUNDLE --to docker://HOST/PREFIX --json`, staging in DIR/staging.
fn push(dist: &Distribution, dir: &Path, prefix: &str, authfile: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    airlift()
        .arg("unpack")
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .args(["--to", &format!("docker://{}/{prefix}", dist.host())])
        .arg("--authfile")
        .arg(authfile)
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(dir.join("staging"))
        .arg("--json")
        .args(extra)
        .assert()
}

fn doc(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).expect("one JSON document")
}

#[test]
fn push_mirrors_every_image_with_identical_digests_and_a_rerun_pushes_nothing() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    let authfile = dist.authfile(tmp.path());

    let first = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&first);
    assert!(d["push"]["pushed"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["push"]["images"].as_array().unwrap().len(), REFS.len(), "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("mirror/layout:{r}")), testdata_digest(r), "{r}");
    }
    // The multi-arch index's children are there by digest too.
    let multi = testdata_digest("multi");
    let raw = std::fs::read(testdata("layout").join("blobs/sha256").join(multi.trim_start_matches("sha256:"))).unwrap();
    let children: Value = serde_json::from_slice(&raw).unwrap();
    for child in children["manifests"].as_array().unwrap() {
        let c = child["digest"].as_str().unwrap();
        assert_eq!(dist.digest(&format!("mirror/layout@{c}")), c);
    }

    // Again: the journal says everything was accepted; nothing is sent again.
    let again = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&again);
    assert_eq!(d["push"]["pushed"], 0, "{d}");
    assert_eq!(d["push"]["mounted"], 0, "{d}");
    assert!(d["push"]["skipped"].as_u64().unwrap() > 0, "{d}");

    // Without the journal, HEAD finds everything there.
    std::fs::remove_dir_all(tmp.path().join("staging/.airlift/push")).unwrap();
    let heads = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&heads);
    assert_eq!(d["push"]["pushed"], 0, "{d}");
    assert_eq!(d["push"]["bytes"], 0, "{d}");
}

#[test]
fn push_to_a_second_repository_mounts_and_large_blobs_go_in_chunks() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    let authfile = dist.authfile(tmp.path());
    // Tiny chunks: every blob larger than 512 bytes goes as PATCH chunks.
    let first = push(&dist, tmp.path(), "one", &authfile, &["--upload-chunk", "512"]).code(0);
    let d = doc(&first);
    assert_eq!(d["push"]["mounted"], 0, "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("one/layout:{r}")), testdata_digest(r), "{r}");
    }
    // Another prefix on the same registry: blobs are mounted from one/layout, not uploaded.
    let second = push(&dist, tmp.path(), "two", &authfile, &[]).code(0);
    let d = doc(&second);
    assert!(d["push"]["mounted"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["push"]["bytes"], 0, "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("two/layout:{r}")), testdata_digest(r), "{r}");
    }
}

#[test]
fn push_with_wrong_credentials_exits_2_naming_registry_and_repository() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:wrong", dist.user));
    let authfile = tmp.path().join("wrong.json");
    std::fs::write(&authfile, serde_json::json!({ "auths": { dist.host(): { "auth": auth } } }).to_string()).unwrap();
    let failed = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(2);
    let d = doc(&failed);
    let text = d.to_string();
    assert!(text.contains(&dist.host()) && text.contains("mirror/layout"), "{text}");
    assert!(text.contains("rejected the credentials"), "{text}");
}

#[test]
fn push_to_an_unknown_host_exits_2() {
    let tmp = tempdir();
    pack(tmp.path());
    let out = airlift()
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .args(["--to", "docker://no-such-host.invalid:5000/mirror", "--cache"])
        .arg(tmp.path().join("staging"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

#[test]
fn to_conflicts_with_layout_and_root() {
    let tmp = tempdir();
    for other in ["--layout", "--root"] {
        airlift()
            .args(["unpack", "b", "--key", "k", "--to", "docker://localhost:1/x", other])
            .arg(tmp.path())
            .assert()
            .code(2);
    }
}
