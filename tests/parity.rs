//! Parity (`pack --parity`, `airlift repair`, unpack rebuilding on the fly): a bundle of ten
//! data volumes with two recovery volumes survives any two lost or damaged volumes, data
//! or recovery, rebuilt byte-identical; three are refused before anything is written; a
//! forged recovery volume is not trusted; the parity section is covered by the signature.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::registry::Registry;
use crate::common::{self, airlift, keygen, make_layout, run_ok, sha256_hex};
use crate::tamper::{run, unpack, verify, Run};

const NAME: &str = "airlift";

struct Packed {
    tmp: tempfile::TempDir,
    bundle: PathBuf,
    public: PathBuf,
    layout: PathBuf,
    images: Vec<String>,
}

impl Packed {
    /// The bundle's volume files, data then recovery.
    fn volumes(&self) -> Vec<String> {
        let data = (1..=10).map(|n| format!("{NAME}.{n:04}.tar"));
        data.chain((1..=2).map(|n| format!("{NAME}.parity.{n:04}"))).collect()
    }

    /// A fresh copy of the bundle directory.
    fn copy(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in common::dir_contents(&self.bundle) {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        dir
    }
}

/// Ten data volumes of 32 KiB and two recovery volumes, from a layout of three images.
fn pack() -> Packed {
    let tmp = common::tempdir();
    let layout = tmp.path().join("app");
    let images = make_layout(&layout, &[&[120_000, 9_000], &[100_000], &[52_000, 1_000]], false);
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let bundle = tmp.path().join("bundle");
    airlift()
        .args(["pack", "--no-installer", "--volume-size", "32KiB", "--parity", "2", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .arg(format!("oci:{}", layout.display()))
        .assert()
        .success();
    let packed = Packed { tmp, bundle, public, layout, images };
    for file in packed.volumes() {
        assert!(packed.bundle.join(&file).is_file(), "{file} was not written");
    }
    assert!(!packed.bundle.join(format!("{NAME}.0011.tar")).exists(), "more than ten data volumes");
    packed
}

/// How a volume is lost.
#[derive(Debug, Clone, Copy)]
enum Loss {
    Delete,
    FlipByte,
    Truncate,
}

fn lose(path: &Path, how: Loss) {
    match how {
        Loss::Delete => std::fs::remove_file(path).unwrap(),
        Loss::FlipByte => {
            let mut bytes = std::fs::read(path).unwrap();
            let at = bytes.len() / 3;
            bytes[at] ^= 0x40;
            std::fs::write(path, bytes).unwrap();
        }
        Loss::Truncate => {
            let len = std::fs::metadata(path).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len - 700).unwrap();
        }
    }
}

fn repair(dir: &Path, public: &Path, extra: &[&str]) -> Run {
    run(airlift().arg("--json").arg("repair").arg(dir).arg("--key").arg(public).args(extra))
}

/// (size, mtime in ns, sha256) of every file in `dir`, by name.
fn stamps(dir: &Path) -> BTreeMap<String, (u64, i64, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let sha = sha256_hex(&std::fs::read(e.path()).unwrap());
            (e.file_name().to_string_lossy().into_owned(), (m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec(), sha))
        })
        .collect()
}

fn assert_volumes_identical(p: &Packed, dir: &Path, what: &str) {
    for file in p.volumes() {
        let got = std::fs::read(dir.join(&file)).unwrap_or_else(|_| panic!("{what}: {file} is absent"));
        assert!(got == std::fs::read(p.bundle.join(&file)).unwrap(), "{what}: {file} differs from the original");
    }
}

#[test]
fn any_two_of_twelve_volumes_lost_or_damaged_are_repaired_byte_identical() {
    let p = pack();
    let volumes = p.volumes();
    let losses = [Loss::Delete, Loss::FlipByte, Loss::Truncate];
    let mut k = 0;
    for a in 0..volumes.len() {
        for b in a + 1..volumes.len() {
            let dir = p.copy(&format!("pair-{a}-{b}"));
            let how = [losses[k % 3], losses[(k + 1) % 3]];
            k += 1;
            lose(&dir.join(&volumes[a]), how[0]);
            lose(&dir.join(&volumes[b]), how[1]);
            if k <= 3 {
                // What verify says first: lost, and recoverable.
                let v = verify(&dir, &p.public, true);
                assert_eq!(v.code, 1, "{how:?}: damage is exit 1: {v:?}");
                assert_eq!(v.json()["parity"]["recoverable"], true, "{v:?}");
                let text = verify(&dir, &p.public, false).stdout;
                assert!(
                    text.contains("2 of 12 volumes lost") && text.contains("recoverable (airlift repair)"),
                    "{text}"
                );
            }
            let r = repair(&dir, &p.public, &[]);
            assert_eq!(r.code, 0, "losing {} ({:?}) and {} ({:?}): {r:?}", volumes[a], how[0], volumes[b], how[1]);
            assert_eq!(r.json()["rebuilt"].as_array().unwrap().len(), 2, "{r:?}");
            assert_volumes_identical(&p, &dir, &format!("pair {a} {b}"));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert_eq!(k, 66);
}

#[test]
fn three_lost_are_not_recoverable_and_repair_writes_nothing() {
    let p = pack();
    let dir = p.copy("three");
    let volumes = p.volumes();
    lose(&dir.join(&volumes[0]), Loss::Delete);
    lose(&dir.join(&volumes[4]), Loss::FlipByte);
    lose(&dir.join(&volumes[11]), Loss::Truncate);
    let before = stamps(&dir);
    let v = verify(&dir, &p.public, false);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("3 of 12 volumes lost (2 damaged, 1 missing)"), "{v:?}");
    assert!(v.stdout.contains("not recoverable"), "{v:?}");
    let r = repair(&dir, &p.public, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["parity"]["recoverable"], false);
    assert_eq!(doc["rebuilt"].as_array().unwrap().len(), 0);
    assert_eq!(stamps(&dir), before, "repair wrote into the directory");
    // Only missing volumes (another disc may hold them): verify says incomplete, exit 3.
    let dir = p.copy("three-missing");
    for i in [1, 2, 3] {
        lose(&dir.join(&volumes[i]), Loss::Delete);
    }
    let v = verify(&dir, &p.public, true);
    assert_eq!(v.code, 3, "{v:?}");
    assert_eq!(v.json()["parity"]["missing"], 3);
}

#[test]
fn a_forged_recovery_volume_is_counted_lost_never_trusted() {
    let p = pack();
    let volumes = p.volumes();
    let dir = p.copy("forged");
    lose(&dir.join(&volumes[10]), Loss::FlipByte);
    lose(&dir.join(&volumes[2]), Loss::Delete);
    let v = verify(&dir, &p.public, true);
    let doc = v.json();
    let forged = doc["volumes"].as_array().unwrap().iter().find(|r| r["file"] == volumes[10].as_str()).unwrap();
    assert_eq!((forged["status"].as_str(), forged["kind"].as_str()), (Some("damaged"), Some("recovery")), "{v:?}");
    let r = repair(&dir, &p.public, &[]);
    assert_eq!(r.code, 0, "rebuilt from the other recovery volume: {r:?}");
    assert_volumes_identical(&p, &dir, "forged recovery volume");
    // With a second data volume gone, the forged one would be needed: refused instead.
    let dir = p.copy("forged-2");
    lose(&dir.join(&volumes[10]), Loss::FlipByte);
    lose(&dir.join(&volumes[2]), Loss::Delete);
    lose(&dir.join(&volumes[7]), Loss::Delete);
    let r = repair(&dir, &p.public, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!dir.join(&volumes[2]).exists() && !dir.join(&volumes[7]).exists());
}

#[test]
fn a_tampered_parity_section_is_refused_by_the_signature() {
    let p = pack();
    let dir = p.copy("tampered");
    let path = dir.join(format!("{NAME}.manifest.json"));
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(m["parity"]["code"], "reed-solomon-simd");
    assert_eq!(m["parity"]["volumes"].as_array().unwrap().len(), 2);
    m["parity"]["volumes"][0]["sha256"] = Value::String(format!("sha256:{}", "0".repeat(64)));
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    for r in [verify(&dir, &p.public, false), repair(&dir, &p.public, &[])] {
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("signature"), "{r:?}");
    }
    // SHA256SUMS lists the recovery volumes, so `sha256sum -c` checks them too.
    let sums = std::fs::read_to_string(p.bundle.join(format!("{NAME}.SHA256SUMS"))).unwrap();
    assert!(sums.contains(&format!("  {NAME}.parity.0002\n")), "{sums}");
}

#[test]
fn repair_from_a_read_only_source_writes_only_into_out() {
    let p = pack();
    let volumes = p.volumes();
    let src = p.copy("src");
    lose(&src.join(&volumes[5]), Loss::Delete);
    lose(&src.join(&volumes[9]), Loss::FlipByte);
    let Some(_ro) = ReadOnly::new(&src) else { return };
    let before = stamps(&src);
    let r = repair(&src, &p.public, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--out"), "the error suggests --out: {r:?}");
    let out = p.tmp.path().join("rebuilt");
    let r = repair(&src, &p.public, &["--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(stamps(&src), before, "the source was written to");
    let mut got: Vec<String> = common::dir_contents(&out).into_keys().collect();
    got.sort();
    let mut expected = vec![
        volumes[5].clone(),
        volumes[9].clone(),
        format!("{NAME}.manifest.json"),
        format!("{NAME}.manifest.json.minisig"),
        format!("{NAME}.SHA256SUMS"),
        format!("{NAME}.SHA256SUMS.minisig"),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // The rebuilt directory plus the intact volumes make the bundle.
    let whole = p.tmp.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    for dir in [&src, &out] {
        for (file, bytes) in common::dir_contents(dir) {
            if !(dir == &src && (file == volumes[5] || file == volumes[9])) {
                std::fs::write(whole.join(file), bytes).unwrap();
            }
        }
    }
    assert_volumes_identical(&p, &whole, "source and --out together");
    let v = verify(&whole, &p.public, false);
    assert_eq!(v.code, 0, "{v:?}");
}

/// A directory made read-only for the test: a read-only bind mount when root (root writes
/// through permissions), else its mode; `None` (test skipped, or failed under CI) when
/// neither makes it read-only.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn new(dir: &Path) -> Option<ReadOnly> {
        use std::os::unix::fs::PermissionsExt;
        let mounted = is_root()
            && std::process::Command::new("mount")
                .args(["--bind"])
                .arg(dir)
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
            && std::process::Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let ro = ReadOnly(dir.to_path_buf(), mounted);
        if std::fs::write(dir.join("probe"), b"").is_ok() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("cannot make {} read-only (no bind mount, and root ignores the mode)", dir.display());
            }
            eprintln!("skipping: cannot make {} read-only here", dir.display());
            let _ = std::fs::remove_file(dir.join("probe"));
            return None;
        }
        Some(ro)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn repairs_sweep_a_killed_runs_temp_files_and_two_at_once_both_succeed() {
    let p = pack();
    let volumes = p.volumes();
    let dir = p.copy("twice");
    lose(&dir.join(&volumes[0]), Loss::Delete);
    lose(&dir.join(&volumes[10]), Loss::Truncate);
    // What a repair killed midway leaves: a temp file beside the volumes.
    std::fs::write(dir.join(".airlift-tmp-killed"), b"half a volume").unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(common::airlift_path())
                .arg("repair")
                .arg(&dir)
                .arg("--key")
                .arg(&p.public)
                .output()
        })
        .collect();
    for c in children {
        let c = c.unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    }
    assert!(!dir.join(".airlift-tmp-killed").exists(), "the killed run's temp file is still there");
    assert_volumes_identical(&p, &dir, "two repairs");
    let listed: Vec<String> = common::dir_contents(&dir).into_keys().collect();
    assert_eq!(listed.len(), 12 + 4, "only the bundle's files: {listed:?}");
}

#[test]
fn a_bundle_without_parity_cannot_be_repaired() {
    let tmp = common::tempdir();
    let (bundle, public) = common::pack_sources(tmp.path(), &[format!("oci:{}", common::testdata("layout").display())]);
    let r = repair(&bundle, &public, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no recovery volumes") && r.stderr.contains("--parity"), "{r:?}");
}

#[test]
fn unpack_with_two_data_volumes_missing_completes_using_parity() {
    let p = pack();
    let volumes = p.volumes();
    let dir = p.copy("two-missing");
    lose(&dir.join(&volumes[3]), Loss::Delete);
    lose(&dir.join(&volumes[6]), Loss::Delete);
    let layout = p.tmp.path().join("out");
    let r = unpack(&dir, &p.public, &layout, true);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["rebuilt_from_parity"], serde_json::json!([volumes[3], volumes[6]]));
    assert_eq!(doc["parity"]["rebuilt"], 2);
    assert!(!layout.join(".airlift/rebuilt").exists(), "the scratch directory is removed");
    for b in std::fs::read_dir(p.layout.join("blobs/sha256")).unwrap() {
        let name = b.unwrap().file_name();
        assert!(layout.join("blobs/sha256").join(&name).is_file(), "blob {name:?} missing");
    }
    for (n, digest) in p.images.iter().enumerate() {
        if common::have("skopeo") {
            let out = run_ok(
                std::process::Command::new("skopeo")
                    .args(["inspect", "--raw"])
                    .arg(format!("oci:{}:img-{n}", layout.display())),
            );
            assert_eq!(format!("sha256:{}", sha256_hex(out.as_bytes())), *digest);
        }
    }
    // Three lost: not enough; unpack gives the usual report and the census line.
    let dir = p.copy("three-missing");
    for i in [0, 1, 2] {
        lose(&dir.join(&volumes[i]), Loss::Delete);
    }
    let r = unpack(&dir, &p.public, &p.tmp.path().join("out3"), false);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("not recoverable"), "{r:?}");
}

#[test]
fn unpack_into_a_registry_root_rebuilds_and_serves_every_image() {
    if !common::have("skopeo") {
        return;
    }
    let p = pack();
    let volumes = p.volumes();
    let dir = p.copy("root");
    lose(&dir.join(&volumes[0]), Loss::Truncate);
    lose(&dir.join(&volumes[9]), Loss::Delete);
    let mut reg = Registry::install();
    let results = p.tmp.path().join("results");
    let r = run(airlift()
        .arg("unpack")
        .arg(&dir)
        .arg("--key")
        .arg(&p.public)
        .arg("--root")
        .arg(&reg.root)
        .arg("--results")
        .arg(&results));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("rebuilt from the recovery volumes"), "{r:?}");
    reg.serve(&[]);
    for (n, digest) in p.images.iter().enumerate() {
        let mut cmd = reg.skopeo("inspect");
        cmd.args(reg.skopeo_args()).arg(reg.docker_ref(&format!("app:img-{n}")));
        let v: Value = serde_json::from_str(&run_ok(&mut cmd)).unwrap();
        assert_eq!(v["Digest"].as_str(), Some(digest.as_str()));
    }
}

#[test]
fn dry_run_and_list_name_the_recovery_volumes() {
    let p = pack();
    let r = run(airlift().args(["--json", "list"]).arg(&p.bundle).arg("--key").arg(&p.public));
    assert_eq!(r.code, 0, "{r:?}");
    let files: Vec<String> = r.json()["parity"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(files, ["airlift.parity.0001", "airlift.parity.0002"]);
    let r = run(airlift()
        .args(["--json", "pack", "--dry-run", "--no-installer", "--volume-size", "32KiB", "--parity", "20%"])
        .arg("--out")
        .arg(p.tmp.path().join("dry"))
        .arg(format!("oci:{}", p.layout.display())));
    assert_eq!(r.code, 0, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["volumes"].as_array().unwrap().len(), 10);
    assert_eq!(doc["parity_volumes"], serde_json::json!([32768, 32768]));
    // A second pack with less parity removes the recovery volumes it does not have.
    let key = p.tmp.path().join("keys/site.key");
    airlift()
        .args(["pack", "--force", "--no-installer", "--volume-size", "32KiB", "--parity", "1", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&p.bundle)
        .arg(format!("oci:{}", p.layout.display()))
        .assert()
        .success();
    assert!(p.bundle.join("airlift.parity.0001").exists() && !p.bundle.join("airlift.parity.0002").exists());
}
