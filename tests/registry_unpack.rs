//! `unpack --root` against a live registry: killed with SIGKILL and rerun, a second bundle
//! added to the same root while `serve` runs on it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::registry::Registry;
use crate::common::{self, airlift, airlift_path, keygen, make_layout, run_ok};

/// Pack `layout` (all its images) with small chunks; returns (bundle dir, public key).
fn pack(dir: &Path, layout: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, public) = keygen(&dir.join(format!("keys-{name}")), "site");
    let bundle = dir.join(format!("bundle-{name}"));
    airlift()
        .args(["pack", "--no-installer", "--volume-size", "8MiB", "--chunk-size", "64KiB", "--name", name, "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .arg(format!("oci:{}", layout.display()))
        .assert()
        .success();
    (bundle, public)
}

fn unpack_cmd(bundle: &Path, public: &Path, root: &Path) -> Command {
    let mut c = Command::new(airlift_path());
    c.arg("unpack").arg(bundle).arg("--key").arg(public).arg("--root").arg(root);
    c
}

/// The digest skopeo reports for a reference.
fn pulled_digest(reg: &Registry, reference: &str) -> String {
    let mut cmd = reg.skopeo("inspect");
    cmd.args(reg.skopeo_args()).arg(reg.docker_ref(reference));
    let v: Value = serde_json::from_str(&run_ok(&mut cmd)).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

fn blob_stamps(root: &Path) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join("storage/blobs/sha256")) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                m.ino(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn unpack_into_a_registry_killed_with_sigkill_resumes_and_serves_every_image() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let layout = tmp.path().join("app");
    let digests = make_layout(&layout, &[&[7_000_000, 2_000_000], &[6_000_000, 3_000_000, 50_000]], false);
    let (bundle, public) = pack(tmp.path(), &layout, "big");
    let mut reg = Registry::install();
    let journal = reg.root.join("storage/.airlift/journal");
    let journal_lines = || -> usize {
        std::fs::read_dir(&journal)
            .map(|rd| rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count()).sum())
            .unwrap_or(0)
    };
    let mut child =
        unpack_cmd(&bundle, &public, &reg.root).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "unpack finished before it could be killed");
        if journal_lines() >= 40 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "unpack made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = blob_stamps(&reg.root);
    let out = unpack_cmd(&bundle, &public, &reg.root).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "rerun: {}", String::from_utf8_lossy(&out.stderr));
    let after = blob_stamps(&reg.root);
    for b in &before {
        assert!(after.contains(b), "blob {} was rewritten by the rerun", b.0);
    }
    reg.serve(&[]);
    for (n, d) in digests.iter().enumerate() {
        assert_eq!(&pulled_digest(&reg, &format!("app:img-{n}")), d);
    }
}

#[test]
fn a_second_bundle_unpacked_while_the_registry_serves_adds_to_it() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let (first, first_pub) = pack(tmp.path(), &common::testdata("layout"), "first");
    let layout = tmp.path().join("tools");
    let digests = make_layout(&layout, &[&[3_000_000, 40_000]], false);
    let (second, second_pub) = pack(tmp.path(), &layout, "second");

    let mut reg = Registry::install();
    run_ok(&mut unpack_cmd(&first, &first_pub, &reg.root));
    reg.serve(&[]);
    let app00 = pulled_digest(&reg, "layout:app-00");
    // The second bundle goes in while the server is up and being pulled from.
    let puller = {
        let mut cmd = reg.skopeo("copy");
        cmd.arg("--all").args(reg.skopeo_src_args()).arg(reg.docker_ref("layout:multi"));
        cmd.arg(format!("oci:{}:multi", tmp.path().join("pulled").display()));
        cmd.spawn().unwrap()
    };
    run_ok(&mut unpack_cmd(&second, &second_pub, &reg.root));
    assert!(puller.wait_with_output().unwrap().status.success(), "a pull during unpack failed");
    assert_eq!(pulled_digest(&reg, "tools:img-0"), digests[0]);
    assert_eq!(pulled_digest(&reg, "layout:app-00"), app00, "the first bundle's images are still there");
    let catalog: Value = serde_json::from_slice(&reg.get("/v2/_catalog").bytes().unwrap()).unwrap();
    let repos: Vec<&str> = catalog["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(repos, ["layout", "tools"]);
}
