//! `airlift fsck` on a registry root that `unpack --root` filled: a flipped byte, a
//! truncated blob, a missing blob, a dangling tag and link, a manifest that does not parse;
//! `--repair` from the bundle; `serve` refusing a blob whose size is not its recorded one.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

use crate::common::registry::{digest_of, Registry};
use crate::common::{self, airlift_path, make_layout, pack_sources, run_ok};

/// A registry root holding the images of a fresh layout (`app:img-0`, `app:img-1`),
/// unpacked from a bundle kept for repairs.
struct Fixture {
    _tmp: tempfile::TempDir,
    reg: Registry,
    bundle: PathBuf,
    public: PathBuf,
    /// The manifest digests of img-0 and img-1.
    images: Vec<String>,
    layout: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = common::tempdir();
        let layout = tmp.path().join("app");
        // 64 KiB chunks: img-0's first layer is stored in parts.
        let images = make_layout(&layout, &[&[300_000, 20_000], &[100_000]], false);
        let sources = ["--chunk-size".to_string(), "64KiB".to_string(), format!("oci:{}", layout.display())];
        let (bundle, public) = pack_sources(tmp.path(), &sources);
        let reg = Registry::install();
        run_ok(
            Command::new(airlift_path())
                .arg("unpack")
                .arg(&bundle)
                .arg("--key")
                .arg(&public)
                .arg("--root")
                .arg(&reg.root),
        );
        Fixture { _tmp: tmp, reg, bundle, public, images, layout }
    }

    /// The manifest of image `n`, from the source layout.
    fn manifest(&self, n: usize) -> Value {
        let hex = self.images[n].strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(self.layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.reg.storage().join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
    }

    fn repo(&self) -> PathBuf {
        self.reg.storage().join("repositories/app")
    }

    /// `airlift fsck --root ROOT --json ARGS…`: exit code and document.
    fn fsck(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(airlift_path())
            .args(["fsck", "--json", "--jobs", "2", "--root"])
            .arg(&self.reg.root)
            .args(args)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(doc["exit_code"].as_i64(), out.status.code().map(i64::from), "{doc}");
        (out.status.code().unwrap(), doc)
    }

    /// Store `bytes` as a manifest of media type `media_type` of `app` by hand (blob, link,
    /// revision) and tag it; returns its digest.
    fn register(&self, bytes: &[u8], media_type: &str, tag: &str) -> String {
        let digest = digest_of(bytes);
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::write(self.blob(&digest), bytes).unwrap();
        std::fs::write(self.repo().join("_links").join(hex), format!("{}\n", bytes.len())).unwrap();
        let revision = serde_json::json!({"mediaType": media_type, "size": bytes.len()});
        std::fs::write(self.repo().join("_manifests/revisions").join(hex), revision.to_string()).unwrap();
        std::fs::write(self.repo().join("_manifests/tags").join(tag), format!("{digest}\n")).unwrap();
        digest
    }

    fn repair(&self) -> (i32, Value) {
        let (bundle, public) = (self.bundle.display().to_string(), self.public.display().to_string());
        self.fsck(&["--repair", &bundle, "--key", &public])
    }

    /// skopeo copy of `app:TAG` out of the running registry into a fresh layout.
    fn pull(&self, tag: &str, into: &Path) -> std::process::Output {
        let mut cmd = self.reg.skopeo("copy");
        cmd.args(self.reg.skopeo_src_args()).arg(self.reg.docker_ref(&format!("app:{tag}")));
        cmd.arg(format!("oci:{}:{tag}", into.display()));
        cmd.output().unwrap()
    }
}

/// The problems of `kind` in a fsck document.
fn problems<'d>(doc: &'d Value, kind: &str) -> Vec<&'d Value> {
    doc["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == kind).collect()
}

fn hurt_references(problem: &Value) -> Vec<String> {
    let mut out: Vec<String> = problem["hurts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}@{}",
                i["repository"].as_str().unwrap(),
                i["tag"].as_str().unwrap_or("-"),
                i["digest"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_flipped_byte_is_found_with_the_images_it_hurts_and_repaired_from_the_bundle() {
    if !common::have("skopeo") {
        return;
    }
    let mut f = Fixture::new();
    let (code, doc) = f.fsck(&[]);
    assert_eq!(code, 0, "a fresh root is clean: {doc}");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["manifests"], 2);
    assert_eq!(doc["tags"], 2);

    let layer = f.manifest(0)["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = f.blob(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1234] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let (code, doc) = f.fsck(&[]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["status"], "failed");
    let wrong = problems(&doc, "wrong-hash");
    assert_eq!(wrong.len(), 1, "{doc}");
    assert_eq!(wrong[0]["digest"], layer.as_str());
    assert_eq!(wrong[0]["path"], path.display().to_string());
    assert_eq!(hurt_references(wrong[0]), [format!("app:img-0@{}", f.images[0])], "img-1 does not use the layer");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 1, "{doc}");
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["reference"], "app:img-0");
    assert_eq!(images[0]["digest"], f.images[0].as_str());

    // The human report names the blob, its file and the image, and ends with the verdict.
    let out = Command::new(airlift_path()).arg("fsck").arg("--root").arg(&f.reg.root).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("WRONG-HASH    blob {layer}: content hashes to sha256:")), "{text}");
    assert!(text.contains(&format!("hurts: app:img-0 ({})", f.images[0])), "{text}");
    assert!(text.trim_end().ends_with("FAILED: 1 problem(s) in the store; 1 image(s) hurt"), "{text}");

    let (code, doc) = f.repair();
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["repair"]["restored"], serde_json::json!([layer]));
    assert_eq!(std::fs::read(&path).unwrap().len(), 300_000);
    assert_eq!(digest_of(&std::fs::read(&path).unwrap()), layer);
    let (code, doc) = f.fsck(&[]);
    assert_eq!(code, 0, "{doc}");
    assert!(
        f.reg.storage().join(".airlift/journal").read_dir().map_or(true, |mut d| d.next().is_none()),
        "the repair left no journal"
    );

    f.reg.serve(&[]);
    let pulled = f._tmp.path().join("pulled");
    let out = f.pull("img-0", &pulled);
    assert!(out.status.success(), "skopeo copy after the repair: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_answers_an_error_for_a_truncated_blob_and_skopeo_fails() {
    if !common::have("skopeo") {
        return;
    }
    let mut f = Fixture::new();
    let layer = f.manifest(1)["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = f.blob(&layer);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(60_000).unwrap();
    f.reg.serve(&[]);
    for head in [false, true] {
        let url = format!("/v2/app/blobs/{layer}");
        let r = if head { f.reg.head(&url) } else { f.reg.get(&url) };
        assert_eq!(r.status().as_u16(), 500, "HEAD={head}");
        if !head {
            let body: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
            assert!(body["errors"][0]["code"].is_string(), "the OCI error envelope: {body}");
        }
    }
    assert!(f.reg.log().contains(&format!("blob {layer} of app is 60000 bytes, its link records 100000")), "logged");
    let pulled = f._tmp.path().join("pulled");
    let out = f.pull("img-1", &pulled);
    assert!(!out.status.success(), "skopeo copy of an image with a truncated layer must fail");
    // img-0 does not share the layer and still pulls.
    assert!(f.pull("img-0", &pulled).status.success());

    let (code, doc) = f.fsck(&[]);
    assert_eq!(code, 1);
    let wrong = problems(&doc, "wrong-hash");
    assert_eq!(wrong.len(), 1, "{doc}");
    assert!(wrong[0]["problem"].as_str().unwrap().contains("(60000 bytes)"), "{doc}");
    let (code, doc) = f.repair();
    assert_eq!(code, 0, "{doc}");
    assert!(f.pull("img-1", &pulled).status.success(), "pulls again after the repair");
}

#[test]
fn a_missing_blob_a_dangling_tag_and_link_and_an_unparsable_manifest_are_each_reported() {
    let f = Fixture::new();
    let config = f.manifest(1)["config"]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(f.blob(&config)).unwrap();
    let nowhere = format!("sha256:{}", "0".repeat(64));
    std::fs::write(f.repo().join("_manifests/tags/ghost"), format!("{nowhere}\n")).unwrap();
    std::fs::write(f.repo().join("_links").join("0".repeat(64)), "12\n").unwrap();
    // A manifest whose stored bytes are not a manifest, registered and tagged.
    let junk = f.register(b"{\"schemaVersion\":2,\"layers\":\"no\"}", OCI_MANIFEST, "broken");
    // An index over img-1 and a platform the root does not hold (not damage).
    let img1 = std::fs::read(f.layout.join("blobs/sha256").join(f.images[1].strip_prefix("sha256:").unwrap())).unwrap();
    let child =
        |digest: &str, size: usize| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [child(&f.images[1], img1.len()), child(&format!("sha256:{}", "1".repeat(64)), 10)]});
    let index = f.register(&serde_json::to_vec(&index).unwrap(), OCI_INDEX, "all");

    let (code, doc) = f.fsck(&[]);
    assert_eq!(code, 1, "{doc}");
    let missing = problems(&doc, "missing");
    assert_eq!(missing.len(), 1, "{doc}");
    assert_eq!(missing[0]["digest"], config.as_str());
    assert_eq!(hurt_references(missing[0]), [format!("app:all@{index}"), format!("app:img-1@{}", f.images[1])]);
    assert_eq!(doc["absent_children"], 1, "{doc}");
    let dangling = problems(&doc, "dangling-tag");
    assert_eq!(dangling.len(), 1, "{doc}");
    assert_eq!((&dangling[0]["tag"], &dangling[0]["digest"]), (&"ghost".into(), &nowhere.clone().into()));
    assert_eq!(dangling[0]["path"], f.repo().join("_manifests/tags/ghost").display().to_string());
    let link = problems(&doc, "dangling-link");
    assert_eq!(link.len(), 1, "{doc}");
    assert_eq!(link[0]["digest"], nowhere.as_str());
    let unparsable = problems(&doc, "unparsable");
    assert_eq!(unparsable.len(), 1, "{doc}");
    assert_eq!(unparsable[0]["digest"], junk.as_str());
    assert_eq!(hurt_references(unparsable[0]), [format!("app:broken@{junk}")]);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 4, "{doc}");

    // The repair puts the config back; the rest is not a blob a bundle carries.
    let (code, doc) = f.repair();
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["repair"]["restored"], serde_json::json!([config]));
    assert_eq!(doc["repair"]["not_carried"], serde_json::json!([nowhere]), "the dangling link's blob");
    assert!(problems(&doc, "missing").is_empty(), "{doc}");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 3, "{doc}");
}

#[test]
fn a_blob_cut_short_while_it_is_served_ends_the_transfer_with_an_error() {
    let reg = Registry::start();
    // Far larger than the socket buffers: the server is still reading it when it is cut.
    let data = common::noise(7, 48 << 20);
    let digest = reg.push_blob("big", &data);
    let path = reg.storage().join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap());
    let r = reg.get(&format!("/v2/big/blobs/{digest}"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.content_length(), Some(data.len() as u64));
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1 << 20).unwrap();
    match r.bytes() {
        Ok(body) => panic!("a {}-byte body was accepted for a blob of {} bytes", body.len(), data.len()),
        Err(e) => assert!(!e.is_status(), "{e}"),
    }
}
