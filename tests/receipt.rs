//! `airlift receipt`: what a registry root, an OCI layout and a registry reached over the
//! network hold, checked against what was put there (computed here from the bundle's
//! manifest and the source layout); signed receipts checked by real `minisign`; damaged,
//! oversized and endless receipt files refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::distribution::{write_authfile, Distribution};
use crate::common::registry::Registry;
use crate::common::{airlift, have, keygen, make_layout, pack_sources, run_ok, sha256_hex, testdata};

/// What a receipt file says: the header and the blob, manifest and tag lines.
#[derive(Debug, Default)]
struct Listed {
    header: Value,
    blobs: BTreeMap<String, (u64, Option<String>)>,
    manifests: BTreeMap<String, (u64, Option<String>)>,
    tags: BTreeMap<String, String>,
}

fn read_receipt(path: &Path) -> Listed {
    let text = zstd::decode_all(&std::fs::read(path).unwrap()[..]).unwrap();
    let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut out = Listed { header: serde_json::from_slice(lines.next().unwrap()).unwrap(), ..Listed::default() };
    for line in lines {
        let v: Value = serde_json::from_slice(line).unwrap();
        let repo = v["repository"].as_str().map(str::to_string);
        if let Some(d) = v["blob"].as_str() {
            out.blobs.insert(d.into(), (v["size"].as_u64().unwrap(), repo));
        } else if let Some(d) = v["manifest"].as_str() {
            out.manifests.insert(d.into(), (v["size"].as_u64().unwrap(), repo));
        } else {
            out.tags.insert(v["tag"].as_str().unwrap().into(), v["digest"].as_str().unwrap().into());
        }
    }
    out
}

/// What a bundle carries, from its manifest JSON: every blob with its size, which of them
/// are manifests (their bytes in the source layout say so), and each image's ref name.
struct Carried {
    blobs: BTreeMap<String, u64>,
    manifests: BTreeSet<String>,
    refs: BTreeMap<String, String>,
}

fn carried(bundle: &Path, source: &Path) -> Carried {
    let m: Value = serde_json::from_slice(&std::fs::read(bundle.join("airlift.manifest.json")).unwrap()).unwrap();
    let sizes: BTreeMap<String, u64> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let hex = e["path"].as_str()?.strip_prefix("blobs/sha256/")?;
            Some((format!("sha256:{hex}"), e["size"].as_u64().unwrap()))
        })
        .collect();
    let mut out = Carried { blobs: BTreeMap::new(), manifests: BTreeSet::new(), refs: BTreeMap::new() };
    for image in m["images"].as_array().unwrap() {
        out.refs.insert(image["reference"].as_str().unwrap().into(), image["digest"].as_str().unwrap().into());
        for d in image["blobs"].as_array().unwrap() {
            let d = d.as_str().unwrap().to_string();
            let bytes = std::fs::read(source.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap();
            let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if doc.get("layers").is_some() || doc.get("manifests").is_some() {
                out.manifests.insert(d.clone());
            }
            out.blobs.insert(d.clone(), sizes[&d]);
        }
    }
    out
}

/// `airlift receipt ARGS --json`, which must succeed; its document.
fn receipt_ok(args: &[&str], extra: &[&Path]) -> Value {
    let o = airlift().arg("receipt").args(args).args(extra).arg("--json").output().unwrap();
    assert!(o.status.success(), "receipt {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `airlift receipt --summary FILE EXTRA…`: (exit code, stderr).
fn summary_fails(file: &Path, extra: &[&str]) -> (i32, String) {
    let o = airlift().args(["receipt", "--summary"]).arg(file).args(extra).output().unwrap();
    assert!(!o.status.success(), "receipt --summary {} succeeded", file.display());
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `airlift unpack BUNDLE --key PUB --root ROOT` (installing it, not starting it).
fn unpack_root_cmd(bundle: &Path, public: &Path, root: &Path) -> assert_cmd::Command {
    let mut cmd = airlift();
    cmd.arg("unpack").arg(bundle).arg("--key").arg(public).arg("--root").arg(root);
    cmd.args(["--no-start", "--hostname", "localhost"]);
    cmd
}

/// A bundle of a two-image layout (one layer shared) unpacked into a root and into a
/// layout; returns what it carried, the root and the layout.
fn unpacked(dir: &Path) -> (Carried, PathBuf, PathBuf) {
    let src = dir.join("src");
    make_layout(&src, &[&[3000, 2000], &[3000, 700]], true);
    let (bundle, public) = pack_sources(dir, &[format!("oci:{}", src.display())]);
    let root = dir.join("root");
    unpack_root_cmd(&bundle, &public, &root).assert().success();
    let layout = dir.join("layout");
    airlift().arg("unpack").arg(&bundle).arg("--key").arg(&public).arg("--layout").arg(&layout).assert().success();
    (carried(&bundle, &src), root, layout)
}

#[test]
fn receipts_of_a_root_and_a_layout_list_exactly_what_the_bundle_carried() {
    let dir = crate::common::tempdir();
    let (carried, root, layout) = unpacked(dir.path());
    let layers: BTreeMap<String, u64> =
        carried.blobs.iter().filter(|(d, _)| !carried.manifests.contains(*d)).map(|(d, s)| (d.clone(), *s)).collect();
    assert_eq!(carried.manifests.len(), 2);
    assert_eq!(layers.len(), 5, "two configs and three layers (one shared)");

    let doc = receipt_ok(&["--root"], &[&root, Path::new("--out"), &dir.path().join("root.receipt")]);
    let r = read_receipt(&dir.path().join("root.receipt"));
    assert_eq!(r.header["format"], "airlift.receipt");
    assert_eq!(r.header["destination"].as_str().unwrap(), root.display().to_string());
    assert_eq!(r.blobs.iter().map(|(d, (s, _))| (d.clone(), *s)).collect::<BTreeMap<_, _>>(), layers);
    assert!(r.blobs.values().all(|(_, repo)| repo.as_deref() == Some("src")), "{:?}", r.blobs);
    assert_eq!(r.manifests.keys().cloned().collect::<BTreeSet<_>>(), carried.manifests);
    assert!(r.manifests.iter().all(|(d, (s, _))| carried.blobs[d] == *s));
    let tags: BTreeMap<String, String> = carried.refs.iter().map(|(r, d)| (format!("src:{r}"), d.clone())).collect();
    assert_eq!(r.tags, tags);
    assert_eq!(doc["counts"], serde_json::json!({ "blobs": 5, "manifests": 2, "tags": 2 }));
    assert_eq!(doc["bytes"]["total"].as_u64().unwrap(), carried.blobs.values().sum::<u64>());
    assert_eq!(doc["signature"]["state"], "unsigned");
    assert_eq!(doc["repositories"][0]["name"], "src");
    assert_eq!(doc["repositories"][0]["tags"], 2);

    receipt_ok(&["--layout"], &[&layout, Path::new("--out"), &dir.path().join("layout.receipt")]);
    let l = read_receipt(&dir.path().join("layout.receipt"));
    assert_eq!(l.blobs.iter().map(|(d, (s, _))| (d.clone(), *s)).collect::<BTreeMap<_, _>>(), layers);
    assert!(l.blobs.values().chain(l.manifests.values()).all(|(_, repo)| repo.is_none()));
    assert_eq!(l.manifests.keys().cloned().collect::<BTreeSet<_>>(), carried.manifests);
    assert_eq!(l.tags, carried.refs);
}

#[test]
fn a_signed_receipt_verifies_with_minisign_and_a_wrong_key_is_refused() {
    let dir = crate::common::tempdir();
    let (_, root, _) = unpacked(dir.path());
    let (site_key, site_pub) = keygen(&dir.path().join("site"), "site");
    let (_, other_pub) = keygen(&dir.path().join("other"), "other");
    let file = dir.path().join("site.receipt");
    receipt_ok(&["--root"], &[&root, Path::new("--out"), &file, Path::new("--key"), &site_key]);
    assert!(dir.path().join("site.receipt.minisig").is_file());
    if have("minisign") {
        let out = run_ok(Command::new("minisign").arg("-Vm").arg(&file).arg("-p").arg(&site_pub));
        assert!(out.contains("receipt:"), "{out}");
    }
    let doc = receipt_ok(&["--summary"], &[&file, Path::new("--key"), &site_pub]);
    let key_id = std::fs::read_to_string(&site_pub).unwrap();
    assert_eq!(doc["signature"]["state"], "verified");
    assert!(key_id.contains(&doc["signature"]["key_id"].as_str().unwrap().to_string()), "{doc}");
    assert_eq!(receipt_ok(&["--summary"], &[&file])["signature"]["state"], "unchecked");

    let (code, err) = summary_fails(&file, &["--key", other_pub.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("site.receipt.minisig") && err.contains("does not verify"), "{err}");

    // Human summary: the figures a reviewer reads, on stdout.
    let o = airlift().args(["receipt", "--summary"]).arg(&file).arg("--key").arg(&site_pub).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for want in ["destination: ", "signed by key ", "blobs:       5", "manifests:   2", "tags:        2", "src "] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
}

#[test]
fn damaged_oversized_and_endless_receipts_are_refused_with_a_clear_message() {
    let dir = crate::common::tempdir();
    let (_, root, _) = unpacked(dir.path());
    let good = dir.path().join("good.receipt");
    receipt_ok(&["--root"], &[&root, Path::new("--out"), &good]);
    let bytes = std::fs::read(&good).unwrap();
    let put = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let (code, err) = summary_fails(&put("tampered.receipt", &flipped), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tampered.receipt") && err.contains("zstd"), "{err}");

    let (code, err) = summary_fails(&put("cut.receipt", &bytes[..bytes.len() - 9]), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cut.receipt") && err.contains("zstd"), "{err}");

    let (code, err) = summary_fails(&put("plain.receipt", b"{\"format\":\"airlift.receipt\"}\n"), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("plain.receipt: not a readable zstd receipt"), "{err}");

    let endless_line = zstd::bulk::compress(&vec![b'x'; 1 << 20], 3).unwrap();
    let (code, err) = summary_fails(&put("long.receipt", &endless_line), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("long.receipt: line 1: longer than 65536 bytes"), "{err}");

    let big = dir.path().join("big.receipt");
    std::fs::File::create(&big).unwrap().set_len((1 << 30) + 1).unwrap();
    let (code, err) = summary_fails(&big, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("big.receipt: the receipt is 1073741825 bytes"), "{err}");

    let zero = dir.path().join("zero.receipt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let (code, err) = summary_fails(&zero, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("zero.receipt: the receipt is a character device"), "{err}");

    let fifo = dir.path().join("fifo.receipt");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let (code, err) = summary_fails(&fifo, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fifo.receipt: the receipt is a FIFO"), "{err}");

    let (code, err) = summary_fails(&dir.path().join("absent.receipt"), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("absent.receipt: no such receipt"), "{err}");
}

/// The manifests and blobs (with sizes) of image `digest` in the layout at `src`.
fn walk_layout(src: &Path, digest: &str, manifests: &mut BTreeSet<String>, blobs: &mut BTreeMap<String, u64>) {
    let bytes = std::fs::read(src.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    manifests.insert(digest.to_string());
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    for child in doc["manifests"].as_array().into_iter().flatten() {
        walk_layout(src, child["digest"].as_str().unwrap(), manifests, blobs);
    }
    for d in doc["layers"].as_array().into_iter().flatten().chain(doc.get("config")) {
        blobs.insert(d["digest"].as_str().unwrap().into(), d["size"].as_u64().unwrap());
    }
}

#[test]
fn a_receipt_of_a_registry_over_tls_with_auth_lists_what_was_pushed() {
    let Some(dist) = Distribution::start() else { return };
    let dir = crate::common::tempdir();
    let src = testdata("layout");
    let pushed =
        [("app-00", "ns/app:1.0"), ("app-01", "ns/app:1.1"), ("multi", "ns/multi:v1"), ("app-00", "other/x:1")];
    for (r, name) in pushed {
        dist.push(&format!("oci:{}:{r}", src.display()), name);
    }
    let (mut manifests, mut blobs, mut tags) = (BTreeSet::new(), BTreeMap::new(), BTreeMap::new());
    for (r, name) in &pushed[..3] {
        let digest = crate::common::testdata_digest(r);
        walk_layout(&src, &digest, &mut manifests, &mut blobs);
        tags.insert(name.to_string(), digest);
    }
    let file = dir.path().join("reg.receipt");
    let auth = write_authfile(&dir.path().join("auth"), &dist.host(), &dist.creds());
    let to = format!("docker://{}/ns", dist.host());
    let doc = receipt_ok(
        &["--to", &to, "--parallel", "3"],
        &[Path::new("--out"), &file, Path::new("--authfile"), &auth, Path::new("--cert-dir"), &dist.cert_dir],
    );
    let r = read_receipt(&file);
    assert_eq!(r.header["destination"], to.as_str());
    assert_eq!(r.tags, tags);
    assert_eq!(r.manifests.keys().cloned().collect::<BTreeSet<_>>(), manifests);
    assert_eq!(r.blobs.iter().map(|(d, (s, _))| (d.clone(), *s)).collect::<BTreeMap<_, _>>(), blobs);
    assert!(r.blobs.values().all(|(_, repo)| matches!(repo.as_deref(), Some("ns/app" | "ns/multi"))), "{:?}", r.blobs);
    assert_eq!(doc["repositories"].as_array().unwrap().len(), 2, "other/x is outside the prefix: {doc}");

    // Without credentials the registry refuses, and the error says where they come from.
    let o = airlift()
        .args(["receipt", "--to", &to, "--authfile"])
        .arg(write_authfile(&dir.path().join("none"), "elsewhere:1", "a:b"))
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--out")
        .arg(dir.path().join("x.receipt"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("requires credentials"), "{o:?}");
}

#[test]
fn tags_listed_over_several_pages_are_all_in_the_receipt() {
    let dir = crate::common::tempdir();
    let mut reg = Registry::install();
    let src = dir.path().join("src");
    make_layout(&src, &[&[1000]], false);
    let (bundle, public) = pack_sources(dir.path(), &[format!("oci:{}", src.display())]);
    unpack_root_cmd(&bundle, &public, &reg.root).assert().success();
    let m: Value = serde_json::from_slice(&std::fs::read(bundle.join("airlift.manifest.json")).unwrap()).unwrap();
    let image = m["images"][0]["digest"].as_str().unwrap().to_string();
    let tag_dir = reg.storage().join("repositories/src/_manifests/tags");
    for n in 0..1100 {
        std::fs::write(tag_dir.join(format!("t{n:04}")), format!("{image}\n")).unwrap();
    }
    reg.serve(&[]);
    let file = dir.path().join("paged.receipt");
    let auth = write_authfile(&dir.path().join("auth"), &reg.host(), &reg.creds());
    receipt_ok(
        &["--to", &format!("docker://{}", reg.host())],
        &[Path::new("--out"), &file, Path::new("--authfile"), &auth, Path::new("--cert-dir"), &reg.cert_dir],
    );
    let r = read_receipt(&file);
    assert_eq!(r.tags.len(), 1101, "1100 tags written here and img-0");
    assert!(r.tags.values().all(|d| d == &image));
    assert_eq!(r.manifests.len(), 1);
}

/// A registry on loopback (plain HTTP) that sends, for `ns/app:1.0`, manifest bytes that
/// do not hash to the digest it claims.
fn lying_registry() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let handle = std::thread::spawn(move || {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        let claimed = format!("sha256:{}", sha256_hex(b"something else"));
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut first = [0u8; 1];
            if stream.peek(&mut first).is_err() || first[0] == 0x16 {
                continue; // a TLS hello: this registry speaks plain HTTP only
            }
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            while reader.read_line(&mut String::new()).map(|n| n > 2).unwrap_or(false) {}
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (body, extra): (Vec<u8>, String) = if path.starts_with("/v2/_catalog") {
                (br#"{"repositories":["ns/app"]}"#.to_vec(), String::new())
            } else if path.starts_with("/v2/ns/app/tags/list") {
                (br#"{"name":"ns/app","tags":["1.0"]}"#.to_vec(), String::new())
            } else if path.starts_with("/v2/ns/app/manifests/") {
                let ct = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
                (manifest.to_vec(), format!("{ct}Docker-Content-Digest: {claimed}\r\n"))
            } else {
                (b"{}".to_vec(), String::new())
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
        }
    });
    (host, handle)
}

#[test]
fn a_registry_that_lies_about_a_manifest_digest_is_an_error_naming_the_reference() {
    let dir = crate::common::tempdir();
    let (host, _server) = lying_registry();
    let o = airlift()
        .args(["receipt", "--tls-verify=false", "--to", &format!("docker://{host}/ns"), "--out"])
        .arg(dir.path().join("liar.receipt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("ns/app:1.0") && err.contains("Docker-Content-Digest"), "{err}");
    assert!(!dir.path().join("liar.receipt").exists());
}
