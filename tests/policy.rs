//! Keys from stock minisign, expiry, and a pack killed mid-way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, airlift, airlift_path, keygen, make_layout, testdata};

fn pack_with(key: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    airlift()
        .args(["pack", "--no-installer"])
        .args(extra)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg(format!("oci:{}", testdata("layout").display()))
        .assert()
}

#[test]
fn a_password_protected_key_from_stock_minisign_signs_bundles() {
    let tmp = common::tempdir();
    let password = tmp.path().join("password");
    std::fs::write(&password, "airlift test password\n").unwrap();
    let key = testdata("keys/minisign-encrypted.key");
    let public = testdata("keys/minisign-encrypted.pub");
    let out = tmp.path().join("b");
    pack_with(&key, &out, &["--password-file", password.to_str().unwrap()]).success();
    airlift().arg("verify").arg(&out).arg("--key").arg(&public).assert().code(0);
    if common::have("minisign") {
        common::run_ok(
            Command::new("minisign").arg("-Vm").arg(out.join("airlift.manifest.json")).arg("-p").arg(&public),
        );
    }
    // A wrong password is a usage error that names the problem, and writes no bundle.
    std::fs::write(&password, "not the password\n").unwrap();
    let out2 = tmp.path().join("b2");
    let wrong = pack_with(&key, &out2, &["--password-file", password.to_str().unwrap()]).code(2);
    let err = String::from_utf8_lossy(&wrong.get_output().stderr).to_lowercase();
    assert!(err.contains("password"), "{err}");
    assert!(!out2.join("airlift.manifest.json").exists());
}

#[test]
fn an_unencrypted_key_from_stock_minisign_signs_bundles() {
    let tmp = common::tempdir();
    let out = tmp.path().join("b");
    pack_with(&testdata("keys/minisign-plain.key"), &out, &[]).success();
    airlift().arg("verify").arg(&out).arg("--key").arg(testdata("keys/minisign-plain.pub")).assert().code(0);
    // The other test key is the wrong key.
    airlift().arg("verify").arg(&out).arg("--key").arg(testdata("keys/minisign-encrypted.pub")).assert().code(1);
}

#[test]
fn an_expired_bundle_is_refused_by_verify_and_unpack() {
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "k");
    let out = tmp.path().join("b");
    // The expiry counts from now (not from SOURCE_DATE_EPOCH): one second, then wait for
    // the clock to pass it.
    airlift()
        .args(["pack", "--no-installer", "--expires", "1s", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .arg(format!("oci:{}", testdata("layout").display()))
        .assert()
        .success();
    let expires = common::wait_until_expired(&out);
    let v = airlift().arg("verify").arg(&out).arg("--key").arg(&public).arg("--json").assert().code(1);
    let doc: serde_json::Value = serde_json::from_slice(&v.get_output().stdout).unwrap();
    assert_eq!(doc["bundle"]["expires"], airlift::time::rfc3339(expires));
    assert!(doc["problems"][0].as_str().unwrap().contains("expired"), "{doc}");
    let u = airlift()
        .arg("unpack")
        .arg(&out)
        .arg("--key")
        .arg(&public)
        .arg("--layout")
        .arg(tmp.path().join("o"))
        .assert()
        .code(1);
    assert!(String::from_utf8_lossy(&u.get_output().stderr).contains("expired"));
    assert!(!tmp.path().join("o/blobs").exists(), "an expired bundle was unpacked");
}

#[test]
fn pack_killed_mid_way_leaves_no_bundle_and_a_rerun_gives_the_same_bytes() {
    let tmp = common::tempdir();
    let layout = tmp.path().join("src");
    make_layout(&layout, &[&[20_000_000, 20_000_000, 20_000_000]], false);
    let (key, _) = keygen(&tmp.path().join("keys"), "k");
    let pack = |out: &Path| {
        let mut c = Command::new(airlift_path());
        c.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "--no-installer", "--volume-size", "4MiB", "--chunk-size", "256KiB", "--key"])
            .arg(&key)
            .arg("--out")
            .arg(out)
            .arg(format!("oci:{}", layout.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let killed = tmp.path().join("killed");
    let mut child = pack(&killed).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut was_killed = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let volumes = std::fs::read_dir(&killed)
            .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tar")).count())
            .unwrap_or(0);
        if volumes >= 3 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
            was_killed = true;
            break;
        }
        assert!(Instant::now() < deadline, "pack made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(was_killed, "pack finished before it could be killed");
    assert!(!killed.join("airlift.manifest.json").exists(), "a killed pack must not leave a manifest");
    assert!(pack(&killed).status().unwrap().success());
    let leftovers: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".airlift-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let fresh = tmp.path().join("fresh");
    assert!(pack(&fresh).status().unwrap().success());
    let mut names: Vec<_> = std::fs::read_dir(&fresh).unwrap().flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in &names {
        assert_eq!(std::fs::read(killed.join(n)).unwrap(), std::fs::read(fresh.join(n)).unwrap(), "{n:?} differs");
    }
    let killed_count = std::fs::read_dir(&killed).unwrap().count();
    assert_eq!(killed_count, names.len(), "the rerun left extra files");
}

#[test]
fn progress_bars_show_on_a_terminal_only() {
    if !common::have("script") {
        return;
    }
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "k");
    let out = tmp.path().join("b");
    pack_with(&key, &out, &["--volume-size", "64KiB", "--chunk-size", "16KiB"]).success();
    // Under a pseudo-terminal (script(1)) verify draws bars...
    let line = format!("{} verify {} --key {}", airlift_path().display(), out.display(), public.display());
    let tty = Command::new("script").args(["-qec", &line, "/dev/null"]).output().unwrap();
    assert!(tty.status.success(), "{tty:?}");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("volume 1 [") && shown.contains("volume 2 ["), "no progress bars on a terminal: {shown}");
    // ...and none when stderr is not a terminal.
    let piped = airlift().arg("verify").arg(&out).arg("--key").arg(&public).assert().code(0);
    let err = String::from_utf8_lossy(&piped.get_output().stderr);
    assert!(!err.contains("volume 1 ["), "progress bars in a pipe: {err}");
}
