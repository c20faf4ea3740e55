//! Resume: unpack killed with SIGKILL at several points and rerun finishes the layout
//! without rewriting what was committed; volumes can arrive over several runs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, airlift, airlift_path, keygen, make_layout, sha256_hex};

struct Packed {
    _tmp: tempfile::TempDir,
    bundle: PathBuf,
    public: PathBuf,
    root: PathBuf,
    images: Vec<String>,
}

/// A bundle of ~40 MB in 64 KiB chunks over 8 MiB volumes: hundreds of chunks, each
/// committed with an fsync, so unpack runs long enough to be killed mid-way.
fn pack_big() -> Packed {
    let tmp = common::tempdir();
    let root = tmp.path().to_path_buf();
    let layout = root.join("src");
    let images = make_layout(
        &layout,
        &[&[9_000_000, 3_000_000, 70_000], &[9_000_000, 5_000_000, 1_000], &[8_000_000, 6_000_000]],
        false,
    );
    let (key, public) = keygen(&root.join("keys"), "k");
    let bundle = root.join("bundle");
    airlift()
        .args(["pack", "--no-installer", "--volume-size", "8MiB", "--chunk-size", "64KiB", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .arg(format!("oci:{}", layout.display()))
        .assert()
        .success();
    Packed { _tmp: tmp, bundle, public, root, images }
}

/// (inode, mtime in ns) of every committed blob.
fn blob_stamps(layout: &Path) -> BTreeMap<String, (u64, i64)> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(layout.join("blobs/sha256")) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec()),
            );
        }
    }
    out
}

fn journal_lines(layout: &Path) -> usize {
    let dir = layout.join(".airlift/journal");
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count()).sum())
        .unwrap_or(0)
}

/// Start unpack and SIGKILL it once `ready` says so; returns whether it was killed
/// (false: it finished first).
fn unpack_and_kill(p: &Packed, out: &Path, ready: impl Fn() -> bool) -> bool {
    let mut child = Command::new(airlift_path())
        .arg("unpack")
        .arg(&p.bundle)
        .arg("--key")
        .arg(&p.public)
        .arg("--layout")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "unpack failed on its own: {status:?}");
            return false;
        }
        if ready() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let status = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            return status.signal() == Some(libc::SIGKILL);
        }
        assert!(Instant::now() < deadline, "unpack neither finished nor reached the kill point");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn assert_complete(p: &Packed, out: &Path) {
    let src = p.root.join("src/blobs/sha256");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let got = std::fs::read(out.join("blobs/sha256").join(&name)).unwrap_or_else(|_| panic!("blob {name} missing"));
        assert_eq!(sha256_hex(&got), name, "blob {name} corrupt");
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let listed: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    for d in &p.images {
        assert!(listed.contains(&d.as_str()), "index.json lacks {d}");
    }
    assert_eq!(std::fs::read_dir(out.join(".airlift/tmp")).unwrap().count(), 0, "temp files left behind");
}

#[test]
fn unpack_killed_at_several_points_resumes_without_rewriting() {
    let p = pack_big();
    let out = p.root.join("site");
    let total_chunks = {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.bundle.join("airlift.manifest.json")).unwrap()).unwrap();
        m["chunks"].as_array().unwrap().len()
    };
    assert!(total_chunks > 300, "bundle too small to kill mid-way: {total_chunks} chunks");
    // Kill points: as soon as the first part is journaled, a third of the way, and two
    // thirds of the way (counted in journaled parts since the previous run).
    let mut kills = 0;
    for fraction in [0usize, 3, 2] {
        let before = blob_stamps(&out);
        let start = journal_lines(&out);
        let target = if fraction == 0 { start + 1 } else { start + total_chunks / (fraction + 2) };
        let out_c = out.clone();
        if unpack_and_kill(&p, &out, move || journal_lines(&out_c) >= target) {
            kills += 1;
        }
        // Nothing committed before this run was rewritten by it.
        let after = blob_stamps(&out);
        for (name, stamp) in &before {
            assert_eq!(after.get(name), Some(stamp), "blob {name} was rewritten");
        }
    }
    assert!(kills >= 2, "unpack finished before it could be killed ({kills} kills)");
    let before = blob_stamps(&out);
    assert!(!before.is_empty(), "nothing was committed before the kills");
    airlift().arg("unpack").arg(&p.bundle).arg("--key").arg(&p.public).arg("--layout").arg(&out).assert().code(0);
    let after = blob_stamps(&out);
    for (name, stamp) in &before {
        assert_eq!(after.get(name), Some(stamp), "blob {name} was rewritten on resume");
    }
    assert_complete(&p, &out);
    assert!(!out.join(".airlift/journal/").read_dir().unwrap().any(|_| true), "journal not cleaned up");
    // skopeo reads the result.
    if common::have("skopeo") {
        common::run_ok(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:img-1", out.display())));
    }
}

#[test]
fn volumes_in_two_runs_first_incomplete_then_complete() {
    let p = pack_big();
    let out = p.root.join("site");
    let later = p.root.join("later");
    std::fs::create_dir_all(&later).unwrap();
    let vols: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&p.bundle)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.extension().is_some_and(|x| x == "tar"))
            .collect();
        v.sort();
        v
    };
    assert!(vols.len() >= 4, "expected several volumes, got {}", vols.len());
    // Today: the odd volumes. Later: the even ones.
    let held: Vec<&PathBuf> = vols.iter().skip(1).step_by(2).collect();
    for v in &held {
        std::fs::rename(v, later.join(v.file_name().unwrap())).unwrap();
    }
    let first = airlift()
        .arg("unpack")
        .arg(&p.bundle)
        .arg("--key")
        .arg(&p.public)
        .arg("--layout")
        .arg(&out)
        .arg("--json")
        .assert()
        .code(3);
    let doc: serde_json::Value = serde_json::from_slice(&first.get_output().stdout).unwrap();
    assert_eq!(doc["status"], "incomplete");
    let missing: Vec<String> =
        doc["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    for v in &held {
        let name = v.file_name().unwrap().to_string_lossy().into_owned();
        assert!(missing.contains(&name), "{name} not reported missing: {missing:?}");
    }
    let stderr = String::from_utf8_lossy(&first.get_output().stderr).into_owned();
    assert!(stderr.contains(&held[0].file_name().unwrap().to_string_lossy().into_owned()), "stderr: {stderr}");
    // The volumes come back; the present ones go away (as on another trip).
    let before = blob_stamps(&out);
    for v in &vols {
        if !held.contains(&v) {
            std::fs::remove_file(v).unwrap();
        }
    }
    for v in &held {
        std::fs::rename(later.join(v.file_name().unwrap()), v).unwrap();
    }
    airlift().arg("unpack").arg(&p.bundle).arg("--key").arg(&p.public).arg("--layout").arg(&out).assert().code(0);
    let after = blob_stamps(&out);
    for (name, stamp) in &before {
        assert_eq!(after.get(name), Some(stamp), "blob {name} was rewritten");
    }
    assert_complete(&p, &out);
}

#[test]
fn rollback_to_an_older_sequence_is_refused() {
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "k");
    let layout = common::testdata("layout");
    let pack = |seq: &str, dir: &str| {
        airlift()
            .args(["pack", "--no-installer", "--sequence", seq, "--key"])
            .arg(&key)
            .arg("--out")
            .arg(tmp.path().join(dir))
            .arg(format!("oci:{}", layout.display()))
            .assert()
            .success();
    };
    pack("5", "new");
    pack("4", "old");
    let out = tmp.path().join("site");
    let unpack = |dir: &str| {
        let mut c = airlift();
        c.arg("unpack").arg(tmp.path().join(dir)).arg("--key").arg(&public).arg("--layout").arg(&out);
        c
    };
    unpack("new").assert().code(0);
    unpack("new").assert().code(0); // the same bundle again is fine
    let refused = unpack("old").assert().code(1);
    let err = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(err.contains("rollback"), "{err}");
    // Its own hint, not the one for damaged media.
    assert!(err.contains("hint: repack with --sequence 6"), "{err}");
    unpack("old").arg("--allow-rollback").assert().code(0);
}
