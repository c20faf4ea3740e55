//! Release GPG signatures fetched at pack time: a synthetic release in Debian's
//! docker-registry, signatures made by real `gpg` over the atomic container signature of
//! its digest, served by a loopback signature store laid out as mirror.openshift.com's
//! (`sha256=HEX/signature-N`), checked with `--release-key`, carried in the bundle and
//! written as the ConfigMap at unpack.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::common::cluster::{pack_command, unpack_root, yaml};
use crate::common::distribution::Distribution;
use crate::common::{self, airlift, run_ok};
use crate::openshift::{publish_release, VERSION};

/// A signature store on a free loopback port serving `DIR/PATH` for `GET /release/PATH`,
/// 404 for anything else; its base URL.
fn serve_store(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/release", listener.local_addr().unwrap());
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            while let Ok(n) = reader.read_line(&mut String::new()) {
                if n <= 2 {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").trim_start_matches("/release/");
            let file = (!path.contains("..")).then(|| dir.join(path)).filter(|f| f.is_file());
            let (status, body) = match file {
                Some(f) => ("200 OK", std::fs::read(f).unwrap()),
                None => ("404 Not Found", Vec::new()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body));
        }
    });
    base
}

/// A GnuPG home with a fresh signing key for `uid`; its public key at `DIR/UID.asc`,
/// armored or binary.
fn gpg_key(dir: &Path, uid: &str, armor: bool) -> (PathBuf, PathBuf) {
    let home = dir.join(format!("gnupg-{uid}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run_ok(gpg(&home).args(["--passphrase", "", "--quick-gen-key", uid, "default", "default", "never"]));
    let public = dir.join(format!("{uid}.asc"));
    let mut export = gpg(&home);
    if armor {
        export.arg("--armor");
    }
    run_ok(export.arg("--output").arg(&public).args(["--export", uid]));
    (home, public)
}

fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.env("GNUPGHOME", home).args(["--batch", "--yes", "--pinentry-mode", "loopback"]);
    cmd
}

/// `gpg --sign` (a signed message, not detached) of the atomic container signature for
/// `digest`, written to `out`; `extra` gpg arguments.
fn sign(home: &Path, uid: &str, digest: &str, out: &Path, extra: &[&str]) {
    let doc = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": "quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64"},
            "image": {"docker-manifest-digest": digest},
            "type": "atomic container signature",
        },
        "optional": {"creator": "airlift tests"},
    });
    let json = out.with_extension("json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&json, serde_json::to_vec(&doc).unwrap()).unwrap();
    run_ok(gpg(home).args(["--local-user", uid]).args(extra).arg("--output").arg(out).arg("--sign").arg(&json));
    std::fs::remove_file(json).unwrap();
}

/// Pack the release with `args` into `DIR/out` (replacing what is there), expecting exit
/// `code`; its stderr.
fn pack_exits(dist: &Distribution, dir: &Path, release: &str, args: &[String], code: i32) -> String {
    let mut all = vec!["--force".to_string(), "--release".to_string(), release.to_string()];
    all.extend_from_slice(args);
    let o = pack_command(dist, dir, &dir.join("out"), "out", &all).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{stderr}");
    stderr
}

#[test]
fn release_signatures_are_fetched_by_digest_verified_and_carried() {
    if !common::have("skopeo") || !common::have("gpg") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let hex = rel.digest.trim_start_matches("sha256:");
    let (home, key) = gpg_key(tmp.path(), "release@example.com", true);
    let (other_home, other_key) = gpg_key(tmp.path(), "other@example.com", false);
    let store = tmp.path().join("store");
    let base = serve_store(&store);
    let sig_dir = store.join(format!("sha256={hex}"));
    sign(&home, "release@example.com", &rel.digest, &sig_dir.join("signature-1"), &[]);
    sign(&other_home, "other@example.com", &rel.digest, &sig_dir.join("signature-2"), &[]);
    let flags = |keys: &[&Path]| -> Vec<String> {
        let mut f = vec!["--release-signature-url".to_string(), base.clone()];
        keys.iter().for_each(|k| f.extend(["--release-key".to_string(), k.display().to_string()]));
        f
    };

    // Both signatures verify with both keys: fetched until the 404, carried, listed, and
    // written as the ConfigMap the cluster-version operator reads.
    let bundle = tmp.path().join("bundle");
    let mut args = vec!["--release".to_string(), rel.reference.clone()];
    args.extend(flags(&[&key, &other_key]));
    let o = pack_command(&dist, tmp.path(), &bundle, "ocp", &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("signature-2 verified with {}", other_key.display())), "{stderr}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(bundle.join("ocp.manifest.json")).unwrap()).unwrap();
    let carried = manifest["releases"][0]["signatures"].as_array().unwrap();
    assert_eq!(carried.len(), 2, "{manifest}");
    let listed = airlift().args(["list", "--json"]).arg(&bundle).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let files: Vec<&str> = listed["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(carried.iter().all(|s| files.contains(&s.as_str().unwrap())), "{files:?}");
    let root = tmp.path().join("root");
    unpack_root(tmp.path(), &bundle, &root, &["--results", tmp.path().join("results").to_str().unwrap()]);
    let cm = yaml(&tmp.path().join("results/release-signatures.yaml"));
    for n in 1..=2 {
        let b64 = cm["binaryData"][format!("sha256-{hex}-{n}").as_str()].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(bytes, std::fs::read(sig_dir.join(format!("signature-{n}"))).unwrap());
    }

    // A signature no given key made: exit 1 naming the release and the signature.
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[&key]), 1);
    assert!(err.contains(&rel.reference) && err.contains("signature-2") && err.contains("--release-key"), "{err}");

    // A signature by the right key for another digest: exit 1.
    let other = format!("sha256:{}", "ab".repeat(32));
    sign(&home, "release@example.com", &other, &sig_dir.join("signature-2"), &[]);
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[&key]), 1);
    assert!(err.contains("signature-2") && err.contains(&other), "{err}");

    // A tampered signature (the signed digest edited in an uncompressed message): exit 1.
    sign(&home, "release@example.com", &rel.digest, &sig_dir.join("signature-2"), &["--compress-algo", "none"]);
    let bytes = std::fs::read(sig_dir.join("signature-2")).unwrap();
    let at = bytes.windows(hex.len()).position(|w| w == hex.as_bytes()).expect("the digest in the literal data");
    let mut tampered = bytes.clone();
    tampered[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(sig_dir.join("signature-2"), tampered).unwrap();
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[&key]), 1);
    assert!(err.contains("signature-2"), "{err}");
    // The same file given with --release-signature is checked too.
    let file = sig_dir.join("signature-2").display().to_string();
    let given = ["--release-signature".to_string(), file.clone(), "--release-key".into(), key.display().to_string()];
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &given, 1);
    assert!(err.contains(&file) && err.contains("--release-key"), "{err}");

    // No signature in the store: refused with a key (exit 2), a warning without one;
    // without a key, fetched signatures travel with a warning that they are unverified.
    std::fs::remove_dir_all(&sig_dir).unwrap();
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[&key]), 2);
    assert!(err.contains(&rel.reference) && err.contains("no signature"), "{err}");
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[]), 0);
    assert!(err.contains("travels unsigned"), "{err}");
    sign(&home, "release@example.com", &rel.digest, &sig_dir.join("signature-1"), &[]);
    let err = pack_exits(&dist, tmp.path(), &rel.reference, &flags(&[]), 0);
    assert!(err.contains("signature-1 travels unverified"), "{err}");
}
