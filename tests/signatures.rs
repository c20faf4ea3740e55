//! Signatures, attestations, SBOMs and OCI referrers travel with their images (issue 12):
//! pushed into Debian's docker-registry (TLS, htpasswd) beside an image, packed with it,
//! then served by a fresh registry root (by tag and through `/referrers`) and by
//! docker-registry after a push (by tag, the referrers under the fallback tag).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{airlift, make_layout, run_ok, sha256_hex, tempdir, testdata};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SBOM_TYPE: &str = "application/vnd.example.sbom";

/// An HTTPS client for `dist` (its CA, basic credentials on each request).
fn client(dist: &Distribution) -> Client {
    let ca = std::fs::read(dist.cert_dir.join("ca.crt")).unwrap();
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], dist.port)))
        .build()
        .unwrap()
}

fn url(dist: &Distribution, path: &str) -> String {
    format!("https://{}{path}", dist.host())
}

/// Upload a blob into `repo` (POST then PUT); returns its digest and size.
fn push_blob(dist: &Distribution, http: &Client, repo: &str, data: &[u8]) -> (String, usize) {
    let digest = format!("sha256:{}", sha256_hex(data));
    let r = http
        .post(url(dist, &format!("/v2/{repo}/blobs/uploads/")))
        .basic_auth(&dist.user, Some(&dist.password))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "POST upload to {repo}");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{location}{sep}digest={digest}"))
        .basic_auth(&dist.user, Some(&dist.password))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "PUT blob {digest} into {repo}");
    (digest, data.len())
}

/// Put a manifest (its exact bytes) under `reference`; returns its digest.
fn put_manifest(dist: &Distribution, http: &Client, repo: &str, reference: &str, bytes: &[u8]) -> String {
    let media_type: Value = serde_json::from_slice(bytes).unwrap();
    let r = http
        .put(url(dist, &format!("/v2/{repo}/manifests/{reference}")))
        .basic_auth(&dist.user, Some(&dist.password))
        .header("content-type", media_type["mediaType"].as_str().unwrap())
        .body(bytes.to_vec())
        .send()
        .unwrap();
    let status = r.status();
    assert_eq!(status, 201, "PUT manifest {repo}:{reference}: {}", r.text().unwrap_or_default());
    format!("sha256:{}", sha256_hex(bytes))
}

/// Sign `subject` in `repo` with the test key, as `cosign sign --key` does
/// (testdata/sigstore/make-vectors.py), and push the signature as `sha256-HEX.sig`;
/// `tamper` flips one character of the signature first. Returns the `.sig` manifest's digest.
fn push_signature(dist: &Distribution, http: &Client, dir: &Path, repo: &str, subject: &str, tamper: bool) -> String {
    let out = dir.join(format!("sig-{}", &subject[7..19]));
    let _ = std::fs::remove_dir_all(&out);
    run_ok(
        Command::new("python3")
            .arg(testdata("sigstore/make-vectors.py"))
            .arg("sign")
            .arg(testdata("sigstore/test-key.key"))
            .args([subject, &format!("{}/{repo}", dist.host())])
            .arg(&out),
    );
    for blob in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        push_blob(dist, http, repo, &std::fs::read(blob.unwrap().path()).unwrap());
    }
    let mut manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    if tamper {
        let at = manifest.find("cosign/signature\": \"").unwrap() + 30;
        let flipped = if &manifest[at..=at] == "A" { "B" } else { "A" };
        manifest.replace_range(at..=at, flipped);
    }
    put_manifest(dist, http, repo, &format!("{}.sig", subject.replace(':', "-")), manifest.as_bytes())
}

/// An OCI 1.1 referrer of `subject` (an SBOM artifact) pushed by digest, with the
/// fallback tag `sha256-HEX` indexing it, as a client does for a registry without the
/// referrers API. Returns the referrer's digest.
fn push_referrer(dist: &Distribution, http: &Client, repo: &str, subject: &str, subject_size: usize) -> String {
    let (ed, es) = push_blob(dist, http, repo, b"{}");
    let (sd, ss) = push_blob(dist, http, repo, br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM_TYPE,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": es },
        "layers": [{ "mediaType": "application/spdx+json", "digest": sd, "size": ss }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size },
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    put_manifest(dist, http, repo, &digest, &bytes);
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len(), "artifactType": SBOM_TYPE }],
    });
    put_manifest(dist, http, repo, &subject.replace(':', "-"), &serde_json::to_vec(&index).unwrap());
    digest
}

/// The images of the test: `app:1.0` signed with a referrer, `plain:1.0` neither.
struct Source {
    dist: Distribution,
    app: String,
    signature: String,
    referrer: String,
}

fn source(dir: &Path) -> Option<Source> {
    let dist = Distribution::start()?;
    let layout = dir.join("layout");
    make_layout(&layout, &[&[3000], &[2000]], false);
    let app = dist.push(&format!("oci:{}:img-0", layout.display()), "app:1.0");
    dist.push(&format!("oci:{}:img-1", layout.display()), "plain:1.0");
    let http = client(&dist);
    let manifest = http
        .get(url(&dist, &format!("/v2/app/manifests/{app}")))
        .basic_auth(&dist.user, Some(&dist.password))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let signature = push_signature(&dist, &http, dir, "app", &app, false);
    let referrer = push_referrer(&dist, &http, "app", &app, manifest.len());
    Some(Source { dist, app, signature, referrer })
}

/// `airlift pack` of `sources` from `dist` into DIR/bundle, with EXTRA arguments.
fn pack(dist: &Distribution, dir: &Path, sources: &[&str], extra: &[&str]) -> assert_cmd::assert::Assert {
    dist.pack_cmd(dir)
        .arg("--cache")
        .arg(dir.join("cache"))
        .args(extra)
        .args(sources.iter().map(|s| dist.docker_ref(s)))
        .assert()
}

fn json_of(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).expect("one JSON document")
}

fn public(dir: &Path) -> PathBuf {
    dir.join("keys/site.pub")
}

#[test]
fn signatures_and_referrers_travel_from_docker_registry_to_a_root_and_back() {
    let tmp = tempdir();
    let dir = tmp.path();
    let Some(src) = source(dir) else { return };
    let dist = &src.dist;
    // --platform keeps the referrers index's artifacts, which have no platform.
    pack(dist, dir, &["app:1.0", "plain:1.0"], &["--platform", "linux/amd64"]).success();

    let listed = airlift().arg("list").arg(dir.join("bundle")).arg("--key").arg(public(dir)).arg("--json").assert();
    let listed = json_of(&listed.success());
    let images = listed["images"].as_array().unwrap();
    let of =
        |digest: &str| images.iter().find(|i| i["digest"] == digest).unwrap_or_else(|| panic!("{digest}: {listed}"));
    let app = of(&src.app);
    assert_eq!(app["signature"], "signed", "{app}");
    let attached: Vec<(String, String)> = app["attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["digest"].as_str().unwrap().to_string()))
        .collect();
    assert!(attached.contains(&("signature".into(), src.signature.clone())), "{app}");
    assert!(attached.iter().any(|(k, _)| k == "referrers"), "the fallback tag's index is carried: {app}");
    let plain = images.iter().find(|i| i["source"].as_str().unwrap().ends_with("plain:1.0")).unwrap();
    assert_eq!(plain["signature"], "unsigned", "{plain}");
    of(&src.signature);
    // The referrer travels inside the fallback tag's index (an image of the bundle).

    // The gate checks the carried signature offline with the cosign key.
    let key = testdata("sigstore/test-key.pub");
    let checked = json_of(&verify(dir, &["--sigstore-key", key.to_str().unwrap()]).success());
    let states = checked["image_signatures"].as_array().unwrap();
    let state = |digest: &str| states.iter().find(|s| s["digest"] == digest).unwrap_or_else(|| panic!("{checked}"));
    assert_eq!(state(&src.app)["state"], "signed", "{checked}");
    assert!(state(&src.app)["detail"].as_str().unwrap().starts_with("SHA256:"), "{checked}");
    assert_eq!(states.iter().filter(|s| s["state"] == "unsigned").count(), 1, "plain:1.0: {checked}");

    // A fresh root serves the signature by its tag and the referrer through /referrers.
    let root = dir.join("root");
    let out = airlift()
        .arg("unpack")
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(public(dir))
        .arg("--root")
        .arg(&root)
        .args(["--no-start", "--hostname", "localhost", "--json", "--image-policy", key.to_str().unwrap()])
        .assert()
        .success();
    // The ClusterImagePolicy names the signed image's source repository, with the key.
    let policy: Value =
        serde_yaml_ng::from_slice(&std::fs::read(root.join("results/airlift/clusterimagepolicy.yaml")).unwrap())
            .unwrap();
    assert_eq!(policy["kind"], "ClusterImagePolicy", "{policy}");
    assert_eq!(policy["spec"]["scopes"], json!([format!("{}/app", dist.host())]), "only the signed image: {policy}");
    let pem = std::fs::read(&key).unwrap();
    let key_data = policy["spec"]["policy"]["rootOfTrust"]["publicKey"]["keyData"].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(key_data).unwrap(), pem);
    let password = json_of(&out)["credentials"]["password"].as_str().unwrap().to_string();
    let mut reg = Registry::adopt(&root, "init", &password, &root.join("tls/ca.crt"));
    reg.serve(&[]);
    let sig_tag = format!("{}.sig", src.app.replace(':', "-"));
    let r = reg.get(&format!("/v2/app/manifests/{sig_tag}"));
    assert_eq!(r.status(), 200, "the root serves {sig_tag}");
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), src.signature);
    let r = reg.get(&format!("/v2/app/referrers/{}", src.app));
    assert_eq!(r.status(), 200);
    let referrers: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    let found: Vec<&str> =
        referrers["manifests"].as_array().unwrap().iter().filter_map(|m| m["digest"].as_str()).collect();
    assert_eq!(found, [src.referrer.as_str()], "{referrers}");
    reg.stop();

    // Pushed into docker-registry (no referrers API): by tag, the referrer under the fallback tag.
    airlift()
        .current_dir(dir)
        .arg("unpack")
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(public(dir))
        .args(["--to", &format!("docker://{}/mirror", dist.host())])
        .arg("--authfile")
        .arg(dist.authfile(dir))
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(dir.join("staging"))
        .assert()
        .success();
    assert_eq!(dist.digest(&format!("mirror/app:{sig_tag}")), src.signature);
    let http = client(dist);
    let fallback = http
        .get(url(dist, &format!("/v2/mirror/app/manifests/{}", src.app.replace(':', "-"))))
        .basic_auth(&dist.user, Some(&dist.password))
        .header("accept", OCI_INDEX)
        .send()
        .unwrap();
    let fallback: Value = serde_json::from_slice(&fallback.bytes().unwrap()).unwrap();
    assert_eq!(fallback["manifests"][0]["digest"], src.referrer.as_str(), "{fallback}");
}

#[test]
fn signatures_require_refuses_an_unsigned_image_naming_it_and_skip_packs_nothing_attached() {
    let tmp = tempdir();
    let dir = tmp.path();
    let Some(src) = source(dir) else { return };
    let refused = pack(&src.dist, dir, &["app:1.0", "plain:1.0"], &["--signatures", "require"]).code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(stderr.contains("plain:1.0") && !stderr.contains("app:1.0"), "{stderr}");

    pack(&src.dist, dir, &["app:1.0"], &["--signatures", "require", "--force"]).success();
    pack(&src.dist, dir, &["app:1.0"], &["--signatures", "skip", "--force"]).success();
    let listed = airlift().arg("list").arg(dir.join("bundle")).arg("--key").arg(public(dir)).arg("--json").assert();
    let listed = json_of(&listed.success());
    assert_eq!(listed["images"].as_array().unwrap().len(), 1, "skip packs the image alone: {listed}");
    assert_eq!(listed["images"][0]["attached"], json!([]), "{listed}");
    assert_eq!(listed["images"][0]["signature"], Value::Null, "{listed}");
}

#[test]
fn a_tampered_signature_fails_at_pack_with_the_key_and_at_the_gate_with_exit_1() {
    let tmp = tempdir();
    let dir = tmp.path();
    let Some(src) = source(dir) else { return };
    let key = testdata("sigstore/test-key.pub");
    let with_key = ["--sigstore-key", key.to_str().unwrap()];
    pack(&src.dist, dir, &["app:1.0"], &with_key).success();
    // Another key verifies nothing.
    let other = testdata("sigstore/other-key.pub");
    let refused = pack(&src.dist, dir, &["app:1.0"], &["--force", "--sigstore-key", other.to_str().unwrap()]).code(1);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(stderr.contains("app:1.0") && stderr.contains("signature"), "{stderr}");

    let http = client(&src.dist);
    let tampered = push_signature(&src.dist, &http, dir, "app", &src.app, true);
    assert_ne!(tampered, src.signature);
    let refused = pack(&src.dist, dir, &["app:1.0"], &[&["--force"][..], &with_key].concat()).code(1);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(stderr.contains("app:1.0") && stderr.contains("cosign signature is bad"), "{stderr}");
    // Without a key the tampered signature is carried, as any attached artifact; the
    // gate, given the key, finds it bad offline (exit 1) and says so per image.
    pack(&src.dist, dir, &["app:1.0"], &["--force"]).success();
    let failed = verify(dir, &with_key).code(1);
    let doc = json_of(&failed);
    let state = &doc["image_signatures"][0];
    assert_eq!(state["state"], "bad", "{doc}");
    assert_eq!(state["digest"], src.app.as_str(), "{doc}");
    let unchecked = json_of(&verify(dir, &[]).success());
    assert_eq!(unchecked["image_signatures"][0]["state"], "signed", "{unchecked}");
}

/// `airlift verify` of DIR/bundle (offline) with EXTRA arguments, JSON on stdout.
fn verify(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    airlift().arg("verify").arg(dir.join("bundle")).arg("--key").arg(public(dir)).arg("--json").args(extra).assert()
}

#[test]
fn the_image_set_names_the_policy_and_keys_per_repository() {
    let tmp = tempdir();
    let dir = tmp.path();
    let Some(src) = source(dir) else { return };
    let host = src.dist.host();
    std::fs::copy(testdata("sigstore/other-key.pub"), dir.join("other.pub")).unwrap();
    std::fs::copy(testdata("sigstore/test-key.pub"), dir.join("test.pub")).unwrap();
    let config = |policy: &str, key: &str| {
        let file = dir.join("imageset.yaml");
        std::fs::write(
            &file,
            format!(
                "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  additionalImages:\n  \
                 - name: {host}/app:1.0\n  - name: {host}/plain:1.0\n  signatures:\n    policy: {policy}\n    keys:\n    \
                 - scope: {host}/app\n      key: {key}\n"
            ),
        )
        .unwrap();
        file
    };
    // The policy from the file: plain:1.0 has no signature.
    let file = config("require", "test.pub");
    let refused = pack(&src.dist, dir, &[], &["--config", file.to_str().unwrap()]).code(2);
    assert!(String::from_utf8_lossy(&refused.get_output().stderr).contains("plain:1.0"));
    // --signatures wins; the key for app's repository checks its signature.
    let args = ["--config", file.to_str().unwrap(), "--signatures", "optional"];
    pack(&src.dist, dir, &[], &args).success();
    let file = config("optional", "other.pub");
    let refused = pack(&src.dist, dir, &[], &["--config", file.to_str().unwrap(), "--force"]).code(1);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(stderr.contains("app:1.0") && stderr.contains("cosign signature is bad"), "{stderr}");
}
