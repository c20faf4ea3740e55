//! Free space first: pack and unpack check what they will write against a small tmpfs
//! (mounted here, as root) and refuse with exit 2 before writing, naming the bytes
//! needed and available; with room made (the tmpfs remounted bigger) a rerun completes.
//! `--no-space-check` starts anyway: the full disk then stops the run cleanly, and a
//! rerun with room resumes. Not root: skipped loudly, or failed under `CI=true`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::distribution::Distribution;
use crate::common::{self, airlift, keygen, make_layout, run_ok, sha256_hex};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted for one test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `size` bytes at `dir` (created); `None` when this is not root or the
    /// mount is refused: the test then says loudly that it skipped (fails under CI=true).
    fn mount(dir: &Path, size: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        if !rustix::process::geteuid().is_root() {
            return skip("not running as root: cannot mount a tmpfs");
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "airlift-space-test"])
            .arg(dir)
            .status();
        if !mounted.is_ok_and(|s| s.success()) {
            return skip("mount -t tmpfs failed");
        }
        Some(Tmpfs { dir: dir.to_path_buf() })
    }

    /// Make room: remount with `size` bytes.
    fn resize(&self, size: u64) {
        run_ok(Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.dir));
    }

    /// Bytes in use (statvfs).
    fn used(&self) -> u64 {
        let vfs = rustix::fs::statvfs(&self.dir).unwrap();
        (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn skip(why: &str) -> Option<Tmpfs> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the free-space tests need root to mount a tmpfs under CI=true: {why}");
    }
    eprintln!("SKIPPING a free-space test: {why} (run the tests as root to check free space on a tmpfs)");
    None
}

/// A bundle of about 1.2 MB (incompressible layers) in volumes of 512 KiB: image 0 has
/// two small layers, image 1 one of 900 kB, so the first volume completes image 0 only.
struct Fixture {
    tmp: tempfile::TempDir,
    source: String,
    key: PathBuf,
    public: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = common::tempdir();
    let layout = tmp.path().join("src");
    make_layout(&layout, &[&[100_000, 150_000], &[900_000]], false);
    let (key, public) = keygen(&tmp.path().join("keys"), "k");
    Fixture { source: format!("oci:{}", layout.display()), key, public, tmp }
}

impl Fixture {
    fn pack(&self, out: &Path, more: &[&str]) -> std::process::Output {
        airlift()
            .args(["pack", "--no-installer", "--volume-size", "512KiB", "--key"])
            .arg(&self.key)
            .arg("--out")
            .arg(out)
            .args(more)
            .arg(&self.source)
            .output()
            .unwrap()
    }

    /// The bundle packed outside any tmpfs.
    fn bundle(&self) -> PathBuf {
        let out = self.tmp.path().join("bundle");
        let packed = self.pack(&out, &[]);
        assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
        out
    }

    fn unpack(&self, bundle: &Path, target: &[&OsStr], more: &[&str]) -> std::process::Output {
        airlift().arg("unpack").arg(bundle).arg("--key").arg(&self.public).args(target).args(more).output().unwrap()
    }
}

/// The fixture's bundle (on disk) and a tmpfs of `size` bytes for a layout to unpack into.
fn layout_on_tmpfs(size: u64) -> Option<(Fixture, PathBuf, Tmpfs, PathBuf)> {
    let fx = fixture();
    let bundle = fx.bundle();
    let mnt = fx.tmp.path().join("mnt");
    let tmpfs = Tmpfs::mount(&mnt, size)?;
    Some((fx, bundle, tmpfs, mnt.join("layout")))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refusal for lack of space: exit 2, the error, the tmpfs named with the bytes needed
/// and available (human and exact), and the hint naming --no-space-check.
fn assert_refused(out: &std::process::Output, mount: &Path) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("error: not enough free space"), "{text}");
    let line = text.lines().find(|l| l.contains(&format!("{}: needs ", mount.display()))).expect(&text);
    assert!(line.contains(" bytes) available") && line.contains("iB ("), "{line}");
    assert!(text.contains("hint:") && text.contains("--no-space-check"), "{text}");
}

/// The files of `dir` (recursively), relative to it.
fn files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// Every blob in a store's `blobs/sha256` is whole: its content hashes to its name.
fn blobs_whole(blobs: &Path) -> usize {
    let names: Vec<String> = files(blobs);
    for name in &names {
        assert_eq!(sha256_hex(&std::fs::read(blobs.join(name)).unwrap()), *name, "half-written blob {name}");
    }
    names.len()
}

fn verify_ok(fx: &Fixture, bundle: &Path) {
    airlift().arg("verify").arg(bundle).arg("--key").arg(&fx.public).assert().success();
}

#[test]
fn pack_onto_a_small_tmpfs_is_refused_before_writing_and_completes_with_room() {
    let fx = fixture();
    let mnt = fx.tmp.path().join("mnt");
    let Some(tmpfs) = Tmpfs::mount(&mnt, MIB) else { return };
    let out = mnt.join("bundle");

    let refused = fx.pack(&out, &[]);
    assert_refused(&refused, &mnt);
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0, "pack wrote before refusing");

    // With --json the numbers are fields of the one document.
    let json = fx.pack(&out, &["--json"]);
    assert_eq!(json.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["exit_code"], 2);
    let short = &doc["space"]["filesystems"][0];
    assert_eq!(short["filesystem"], mnt.display().to_string());
    let (needed, available) = (short["needed"].as_u64().unwrap(), short["available"].as_u64().unwrap());
    assert_eq!(available, MIB, "statvfs of an empty 1 MiB tmpfs");
    // An upper bound of the bundle: its 1.15 MB of layers and a little more.
    assert!((1_150_000..1_400_000).contains(&needed), "needed {needed}");
    let text = stderr(&json);
    assert!(text.contains(&format!("({needed} bytes)")) && text.contains(&format!("({available} bytes) available")));

    tmpfs.resize(4 * MIB);
    let packed = fx.pack(&out, &[]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    verify_ok(&fx, &out);
    let written: u64 = files(&out).iter().map(|f| std::fs::metadata(out.join(f)).unwrap().len()).sum();
    assert!(written <= needed, "the estimate {needed} is an upper bound of the {written} bytes written");
}

#[test]
fn pack_with_no_space_check_stops_cleanly_on_a_full_tmpfs_and_a_rerun_with_room_completes() {
    let fx = fixture();
    let mnt = fx.tmp.path().join("mnt");
    let Some(tmpfs) = Tmpfs::mount(&mnt, 768 * KIB) else { return };
    let out = mnt.join("bundle");

    let full = fx.pack(&out, &["--no-space-check"]);
    let text = stderr(&full);
    assert_eq!(full.status.code(), Some(2), "{text}");
    assert!(text.contains("No space left on device") && text.contains(&mnt.display().to_string()), "{text}");
    // Only whole volumes stay: no temp file, no manifest.
    let left = files(&out);
    assert!(!left.is_empty(), "the first volume was committed before the disk filled");
    assert!(left.iter().all(|f| f.starts_with("airlift.0") && f.ends_with(".tar")), "{left:?}");

    tmpfs.resize(4 * MIB);
    let packed = fx.pack(&out, &[]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    verify_ok(&fx, &out);
}

#[test]
fn unpack_layout_is_refused_on_a_small_tmpfs_needs_only_the_rest_on_a_rerun_and_completes() {
    let Some((fx, bundle, tmpfs, layout)) = layout_on_tmpfs(256 * KIB) else { return };
    let target = [OsStr::new("--layout"), layout.as_os_str()];

    let refused = fx.unpack(&bundle, &target, &[]);
    assert_refused(&refused, &tmpfs.dir);
    assert_eq!(blobs_whole(&layout.join("blobs/sha256")), 0, "a blob was written before the refusal");
    let json = fx.unpack(&bundle, &target, &["--json"]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    let full = doc["space"]["filesystems"][0]["needed"].as_u64().unwrap();
    assert!(full >= 1_150_000, "every blob is needed: {full}");

    // Only the first volume is here: image 0 is unpacked (exit 3, incomplete).
    let aside = fx.tmp.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    let later: Vec<String> =
        files(&bundle).into_iter().filter(|f| f.ends_with(".tar") && f != "airlift.0001.tar").collect();
    assert!(!later.is_empty());
    later.iter().for_each(|f| std::fs::rename(bundle.join(f), aside.join(f)).unwrap());
    tmpfs.resize(4 * MIB);
    let first = fx.unpack(&bundle, &target, &[]);
    assert_eq!(first.status.code(), Some(3), "{}", stderr(&first));
    later.iter().for_each(|f| std::fs::rename(aside.join(f), bundle.join(f)).unwrap());

    // Too little room for the rest: the figure counts only what is not committed.
    tmpfs.resize(tmpfs.used() + 256 * KIB);
    let json = fx.unpack(&bundle, &target, &["--json"]);
    assert_eq!(json.status.code(), Some(2), "{}", stderr(&json));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    let rest = doc["space"]["filesystems"][0]["needed"].as_u64().unwrap();
    assert!(rest >= 900_000 && full - rest >= 250_000, "image 0's layers are not needed again: {full} → {rest}");

    tmpfs.resize(4 * MIB);
    let done = fx.unpack(&bundle, &target, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(blobs_whole(&layout.join("blobs/sha256")), 7, "3 layers, 2 configs, 2 manifests");
}

#[test]
fn unpack_layout_with_no_space_check_stops_cleanly_on_a_full_tmpfs_and_a_rerun_completes() {
    let Some((fx, bundle, tmpfs, layout)) = layout_on_tmpfs(512 * KIB) else { return };
    let target = [OsStr::new("--layout"), layout.as_os_str()];

    let full = fx.unpack(&bundle, &target, &["--no-space-check"]);
    let text = stderr(&full);
    assert_eq!(full.status.code(), Some(2), "{text}");
    assert!(text.contains("No space left on device") && text.contains(&tmpfs.dir.display().to_string()), "{text}");
    blobs_whole(&layout.join("blobs/sha256"));

    tmpfs.resize(4 * MIB);
    let done = fx.unpack(&bundle, &target, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(blobs_whole(&layout.join("blobs/sha256")), 7);
}

#[test]
fn unpack_root_with_its_storage_on_a_small_tmpfs_is_refused_then_completes_with_room() {
    let fx = fixture();
    let bundle = fx.bundle();
    // The registry (its executable, certificates) is installed on disk; its storage is
    // the tmpfs.
    let root = fx.tmp.path().join("root");
    let storage = root.join("storage");
    let Some(tmpfs) = Tmpfs::mount(&storage, 256 * KIB) else { return };
    let target = [
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("--no-start"),
        OsStr::new("--hostname"),
        OsStr::new("localhost"),
    ];

    let refused = fx.unpack(&bundle, &target, &[]);
    assert_refused(&refused, &storage);
    assert_eq!(blobs_whole(&storage.join("blobs/sha256")), 0, "a blob was written before the refusal");

    let overridden = fx.unpack(&bundle, &target, &["--no-space-check"]);
    assert_eq!(overridden.status.code(), Some(2));
    assert!(stderr(&overridden).contains("No space left on device"), "{}", stderr(&overridden));
    blobs_whole(&storage.join("blobs/sha256"));

    tmpfs.resize(4 * MIB);
    let done = fx.unpack(&bundle, &target, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(blobs_whole(&storage.join("blobs/sha256")), 7);
}

/// The fixture's two images pushed to a docker-registry as space/a:1 and space/b:1.
fn registry_with_fixture(fx: &Fixture) -> Option<(Distribution, Vec<String>)> {
    let dist = Distribution::start()?;
    let layout = fx.source.strip_prefix("oci:").unwrap();
    for (n, name) in ["space/a:1", "space/b:1"].iter().enumerate() {
        dist.push(&format!("oci:{layout}:img-{n}"), name);
    }
    let sources = ["space/a:1", "space/b:1"].iter().map(|n| dist.docker_ref(n)).collect();
    Some((dist, sources))
}

#[test]
fn pack_from_a_registry_counts_the_cache_and_the_bundle_on_one_filesystem_together() {
    let fx = fixture();
    let Some((dist, sources)) = registry_with_fixture(&fx) else { return };
    let mnt = fx.tmp.path().join("mnt");
    // Room for the 1.15 MB of layers once, not for the cache and the volumes both.
    let Some(tmpfs) = Tmpfs::mount(&mnt, 1536 * KIB) else { return };
    let pack = |name: &str, more: &[&str]| {
        airlift()
            .args(["pack", "--no-installer", "--name", name, "--key"])
            .arg(&fx.key)
            .arg("--out")
            .arg(mnt.join("out"))
            .arg("--cache")
            .arg(mnt.join("cache"))
            .arg("--authfile")
            .arg(dist.authfile(fx.tmp.path()))
            .arg("--cert-dir")
            .arg(&dist.cert_dir)
            .args(more)
            .args(&sources)
            .output()
            .unwrap()
    };

    let refused = pack("one", &["--json"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(!mnt.join("out").exists(), "nothing is written to --out before the refusal");
    let doc: Value = serde_json::from_slice(&refused.stdout).unwrap();
    let short = &doc["space"]["filesystems"][0];
    let dirs: Vec<&str> = short["what"].as_array().unwrap().iter().map(|w| w["dir"].as_str().unwrap()).collect();
    assert_eq!(dirs, [mnt.join("out").to_str().unwrap(), mnt.join("cache").to_str().unwrap()]);
    assert!(short["needed"].as_u64().unwrap() >= 2 * 1_150_000, "{short}");

    tmpfs.resize(4 * MIB);
    let packed = pack("one", &[]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    // The blobs are in the cache now: a second bundle needs room for its volumes only.
    tmpfs.resize(tmpfs.used() + 1536 * KIB);
    let again = pack("two", &[]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn unpack_to_a_registry_checks_the_staging_store() {
    let fx = fixture();
    let bundle = fx.bundle();
    let Some(dist) = Distribution::start() else { return };
    let mnt = fx.tmp.path().join("mnt");
    let Some(tmpfs) = Tmpfs::mount(&mnt, 256 * KIB) else { return };
    let to = format!("docker://{}/mirror", dist.host());
    let (authfile, staging) = (dist.authfile(fx.tmp.path()), mnt.join("staging"));
    let target: Vec<&OsStr> = vec![
        "--to".as_ref(),
        to.as_ref(),
        "--authfile".as_ref(),
        authfile.as_os_str(),
        "--cert-dir".as_ref(),
        dist.cert_dir.as_os_str(),
        "--cache".as_ref(),
        staging.as_os_str(),
    ];

    let refused = fx.unpack(&bundle, &target, &[]);
    assert_refused(&refused, &mnt);
    assert_eq!(blobs_whole(&mnt.join("staging/blobs/sha256")), 0, "a blob was staged before the refusal");

    tmpfs.resize(4 * MIB);
    let done = fx.unpack(&bundle, &target, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(dist.digest("mirror/src:img-1").starts_with("sha256:"));
}

#[test]
fn pack_iso_counts_its_images_and_the_volumes_it_removes_as_each_is_written() {
    let fx = fixture();
    let mnt = fx.tmp.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, 11 * MIB / 4) else { return };
    let out = mnt.join("bundle");
    let iso = ["--disc-size", "1200000", "--iso", "--json"];
    // Every image beside every volume does not fit; the error says the images are why.
    let kept = fx.pack(&out, &[&iso[..], &["--keep-volumes"]].concat());
    assert_refused(&kept, &mnt);
    let doc: Value = serde_json::from_slice(&kept.stdout).unwrap();
    let what = doc["space"]["filesystems"][0]["what"].to_string();
    assert!(what.contains("disc images"), "{what}");
    // Each disc's volumes removed once its image is written: the bundle and one image fit.
    let packed = fx.pack(&out, &iso);
    assert!(packed.status.success(), "{}", stderr(&packed));
    let doc: Value = serde_json::from_slice(&packed.stdout).unwrap();
    assert_eq!(doc["disc_images"].as_array().unwrap().len(), 2, "{doc}");
    assert!(files(&out).iter().all(|f| !f.ends_with(".tar")), "the volumes are in the images: {:?}", files(&out));
}
