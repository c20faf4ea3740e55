//! Disc images (`pack --media DISC|--disc-size --iso`) read by real ISO 9660 readers:
//! xorriso (Rock Ridge names), isoinfo (Joliet names), 7z, and the kernel (a loop mount
//! as root) or, where the kernel has no iso9660 driver, fuseiso. Every file of every
//! image is extracted and compared byte for byte; one disc mounted alone verifies its
//! volumes and names the others missing; the airlift copied off disc 1 runs; two packs
//! of the same inputs give the same images; what does not fit is refused before anything
//! is fetched. The full-size DVD run (4.7 GB images) is `bench/iso.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{self, airlift, airlift_path, make_layout};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(o: &Output) -> String {
    format!("exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// Whether every ISO reader these tests use is installed (under CI=true they must be).
fn have_readers() -> bool {
    ["xorriso", "isoinfo", "7z"].iter().all(|t| common::have(t))
}

/// An OCI layout of about 1 MB of noise (three layers) in `dir/layout`.
fn layout(dir: &Path) -> String {
    let layout = dir.join("layout");
    make_layout(&layout, &[&[400_000, 300_000], &[350_000]], false);
    format!("oci:{}", layout.display())
}

/// `pack --json` of `source` into `out` with `args` (see [`pack_command`]); its document.
fn pack(key: &Path, out: &Path, source: &str, args: &[&str]) -> Value {
    let o = pack_command(key, out, source, args).arg("--json").output().unwrap();
    assert!(o.status.success(), "pack: {}", describe(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `pack` of `source` into `out` with `args`, created at a fixed time (so two packs are
/// the same bytes).
fn pack_command(key: &Path, out: &Path, source: &str, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = airlift();
    cmd.env("SOURCE_DATE_EPOCH", "1795776388").args(["pack", "--name", "ocp", "--sequence", "7", "--key"]);
    cmd.arg(key).arg("--out").arg(out).args(args).arg(source);
    cmd
}

/// (disc size, volume size) for the airlift under test, which the bundle carries too:
/// volumes of half its size, so the bundle takes three, and discs of two volumes beside
/// the executable and the small files every disc carries: two discs, the second with one
/// volume.
fn sizes() -> (u64, u64) {
    let exe = std::fs::metadata(airlift_path()).unwrap().len();
    let volume = exe / 2 / 512 * 512;
    (exe + 2 * volume + (1 << 20), volume)
}

/// The files of `iso` as xorriso lists them (Rock Ridge names).
fn xorriso_files(iso: &Path) -> BTreeSet<String> {
    let o = Command::new("xorriso").arg("-indev").arg(iso).args(["-find", "/", "-type", "f"]).output().unwrap();
    assert!(o.status.success(), "xorriso -find: {}", describe(&o));
    text(&o.stdout).lines().map(|l| l.trim().trim_matches('\'').trim_start_matches('/').to_string()).collect()
}

/// The files of `iso` as `isoinfo -J -l` lists them (Joliet names).
fn joliet_files(iso: &Path) -> BTreeSet<String> {
    let out = common::run_ok(Command::new("isoinfo").args(["-J", "-l", "-i"]).arg(iso));
    out.lines().filter(|l| l.starts_with('-')).filter_map(|l| l.split_whitespace().last().map(String::from)).collect()
}

/// The files of `iso` as `7z l` lists them.
fn sevenz_files(iso: &Path) -> BTreeSet<String> {
    let out = common::run_ok(Command::new("7z").args(["l", "-slt"]).arg(iso));
    // The first `Path =` is the archive itself.
    out.lines().filter_map(|l| l.strip_prefix("Path = ")).skip(1).map(String::from).collect()
}

/// Every file of `iso` extracted into `dir` by xorriso (Rock Ridge: names and modes).
fn xorriso_extract(iso: &Path, dir: &Path) {
    common::run_ok(
        Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(iso).args(["-extract", "/"]).arg(dir),
    );
}

/// Every file of `iso` extracted into `dir` by 7z.
fn sevenz_extract(iso: &Path, dir: &Path) {
    common::run_ok(Command::new("7z").args(["x", "-y"]).arg(format!("-o{}", dir.display())).arg(iso));
}

/// What every disc carries besides its volumes.
fn shared_files() -> Vec<String> {
    ["ocp.manifest.json", "ocp.manifest.json.minisig", "ocp.SHA256SUMS", "ocp.SHA256SUMS.minisig", "README.txt"]
        .map(String::from)
        .to_vec()
}

/// The discs of a pack's document: (label, volume files), and the images written.
fn discs(doc: &Value) -> Vec<(String, Vec<String>)> {
    doc["discs"]["discs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let files = d["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
            (d["label"].as_str().unwrap().to_string(), files)
        })
        .collect()
}

#[test]
fn every_image_lists_and_extracts_its_files_byte_for_byte_and_packs_reproduce() {
    if !have_readers() {
        return;
    }
    let tmp = common::tempdir();
    let (key, _) = common::keygen(&tmp.path().join("keys"), "site");
    let source = layout(tmp.path());
    let out = tmp.path().join("bundle");
    let (capacity, volume) = sizes();
    let (size, volume) = (capacity.to_string(), volume.to_string());
    let args = ["--disc-size", &size, "--volume-size", &volume, "--iso", "--keep-volumes"];
    let doc = pack(&key, &out, &source, &args);
    let discs = discs(&doc);
    assert_eq!(discs.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), [2, 1], "{doc}");
    let images = doc["disc_images"].as_array().unwrap();
    assert_eq!(images.len(), discs.len());
    for (image, (label, volumes)) in images.iter().zip(&discs) {
        let iso = out.join(image["file"].as_str().unwrap());
        let bytes = std::fs::metadata(&iso).unwrap().len();
        assert_eq!(image["size"], bytes, "{}", iso.display());
        assert!(bytes <= capacity, "{} is {bytes} bytes, the disc {capacity}", iso.display());
        assert_eq!(image["label"], label.as_str());
        let mut expected: BTreeSet<String> = shared_files().into_iter().chain(volumes.iter().cloned()).collect();
        expected.insert("airlift".into());
        assert_eq!(xorriso_files(&iso), expected, "xorriso -find {}", iso.display());
        assert_eq!(joliet_files(&iso), expected, "isoinfo -J -l {}", iso.display());
        assert_eq!(sevenz_files(&iso), expected, "7z l {}", iso.display());
        let volume_id = common::run_ok(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
        assert!(volume_id.contains(&format!("Volume id: {label}\n")), "{volume_id}");
        for (reader, extract) in [("xorriso", xorriso_extract as fn(&Path, &Path)), ("7z", sevenz_extract)] {
            let dir = tmp.path().join(format!("{label}-{reader}"));
            extract(&iso, &dir);
            for file in &expected {
                let got = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{reader}: {file}: {e}"));
                let want = match file.as_str() {
                    "airlift" => std::fs::read(airlift_path()).unwrap(),
                    "README.txt" => {
                        let readme = text(&got);
                        assert!(readme.contains(&format!("This is disc {}, {label}.", disc_of(label))), "{readme}");
                        continue;
                    }
                    f => std::fs::read(out.join(f)).unwrap(),
                };
                assert!(got == want, "{reader}: {file} of {} differs from what was packed", iso.display());
            }
        }
    }
    // Copied off disc 1 by xorriso (Rock Ridge keeps its mode), airlift runs.
    let copied = tmp.path().join(format!("{}-xorriso", discs[0].0)).join("airlift");
    let version = common::run_ok(Command::new(&copied).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    // The same inputs, key and time: the same images, byte for byte.
    let again = tmp.path().join("again");
    let doc2 = pack(&key, &again, &source, &args);
    assert_eq!(doc2["disc_images"], doc["disc_images"]);
    for image in images {
        let file = image["file"].as_str().unwrap();
        assert!(std::fs::read(out.join(file)).unwrap() == std::fs::read(again.join(file)).unwrap(), "{file} differs");
    }
}

/// "2 of 3" from a label `OCP_2OF3`.
fn disc_of(label: &str) -> String {
    let tail = label.rsplit('_').next().unwrap();
    let (n, count) = tail.split_once("OF").unwrap();
    format!("{n} of {count}")
}

/// A mounted image, unmounted when dropped (also when the test fails).
struct Mounted {
    dir: PathBuf,
    fuse: bool,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let status = match self.fuse {
            true => Command::new("fusermount").arg("-u").arg(&self.dir).status(),
            false => Command::new("umount").arg(&self.dir).status(),
        };
        assert!(status.is_ok_and(|s| s.success()) || std::thread::panicking(), "unmount {}", self.dir.display());
    }
}

/// Mount `iso` read-only at `dir`: a loop mount by the kernel's iso9660 driver, or, on a
/// kernel without one, fuseiso. Needs root (CI=true fails without; elsewhere skipped).
fn mount(iso: &Path, dir: &Path) -> Option<Mounted> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: mounting a disc image needs root");
        eprintln!("SKIPPED: mounting a disc image needs root");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let kernel = std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("iso9660");
    let o = match kernel {
        true => Command::new("mount").args(["-t", "iso9660", "-o", "loop,ro"]).arg(iso).arg(dir).output(),
        false if common::have("fuseiso") => Command::new("fuseiso").arg("-n").arg(iso).arg(dir).output(),
        false => return None,
    };
    let o = o.unwrap();
    assert!(o.status.success(), "mounting {}: {}", iso.display(), describe(&o));
    Some(Mounted { dir: dir.to_path_buf(), fuse: !kernel })
}

#[test]
fn disc_two_mounted_alone_verifies_its_volumes_and_names_the_others_missing() {
    if !common::have("isoinfo") {
        return;
    }
    let tmp = common::tempdir();
    let (key, public) = common::keygen(&tmp.path().join("keys"), "site");
    let source = layout(tmp.path());
    let out = tmp.path().join("bundle");
    // Three volumes, two a disc: the second disc holds one.
    let doc =
        pack(&key, &out, &source, &["--disc-size", "1200000", "--volume-size", "400KiB", "--iso", "--no-installer"]);
    let discs = discs(&doc);
    assert_eq!(discs.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), [2, 1], "{doc}");
    assert_eq!(discs[1].0, "OCP_2OF2");
    // The volume files are in the images now; the signed files stay beside them.
    let left: BTreeSet<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut expected: BTreeSet<String> = shared_files().into_iter().filter(|f| f != "README.txt").collect();
    expected.extend(["ocp.disc01.iso".to_string(), "ocp.disc02.iso".to_string()]);
    assert_eq!(left, expected);

    let Some(mounted) = mount(&out.join("ocp.disc02.iso"), &tmp.path().join("disc2")) else { return };
    let o = airlift().arg("verify").arg(&mounted.dir).arg("--key").arg(&public).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let states: Vec<(String, String)> = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["file"].as_str().unwrap().to_string(), v["status"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = discs
        .iter()
        .flat_map(|(label, files)| {
            files.iter().map(move |f| (f.clone(), if label == "OCP_2OF2" { "ok" } else { "missing" }.to_string()))
        })
        .collect();
    assert_eq!(states, expected, "{report}");
    let human = airlift().arg("verify").arg(&mounted.dir).arg("--key").arg(&public).output().unwrap();
    assert!(text(&human.stdout).contains("INCOMPLETE: everything present is good"), "{}", describe(&human));
}

#[test]
fn one_disc_holds_a_small_bundle_and_verifies_whole_from_its_image() {
    if !have_readers() {
        return;
    }
    let tmp = common::tempdir();
    let (key, public) = common::keygen(&tmp.path().join("keys"), "site");
    let out = tmp.path().join("bundle");
    let doc = pack(&key, &out, &layout(tmp.path()), &["--disc-size", "3MB", "--iso", "--no-installer"]);
    assert_eq!(discs(&doc).iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), ["OCP_1OF1"]);
    assert_eq!(doc["disc_images"][0]["file"], "ocp.disc01.iso");
    // Everything on the one disc: what 7z takes out of it verifies whole.
    let dir = tmp.path().join("disc1");
    sevenz_extract(&out.join("ocp.disc01.iso"), &dir);
    assert!(!dir.join("airlift").exists(), "--no-installer: no executable on the disc");
    assert!(text(&std::fs::read(dir.join("README.txt")).unwrap()).contains("carries no airlift executable"));
    let o = airlift().arg("verify").arg(&dir).arg("--key").arg(&public).output().unwrap();
    assert!(o.status.success(), "{}", describe(&o));
}

#[test]
fn what_cannot_fit_a_disc_is_refused_before_anything_is_fetched() {
    let tmp = common::tempdir();
    let (key, _) = common::keygen(&tmp.path().join("keys"), "site");
    let out = tmp.path().join("bundle");
    // Nothing listens there: a refusal after fetching would name the connection.
    let source = "docker://127.0.0.1:9/none/app:1";
    let exe = std::fs::metadata(airlift_path()).unwrap().len();
    let disc = (exe + (1 << 20)).to_string();
    let o =
        pack_command(&key, &out, source, &["--disc-size", &disc, "--volume-size", "2MiB", "--iso"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = text(&o.stderr);
    assert!(err.contains("--volume-size 2097152 does not fit") && err.contains("--no-installer"), "{err}");
    assert!(!out.exists(), "nothing written");
    for args in [&["--iso"][..], &["--iso", "--media", "fat32"], &["--keep-volumes", "--media", "dvd"]] {
        let o = pack_command(&key, &out, source, args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", describe(&o));
    }
    let o = pack_command(&key, &out, source, &["--iso"]).output().unwrap();
    assert!(text(&o.stderr).contains("--iso needs a disc"), "{}", describe(&o));
}

#[test]
fn the_dry_run_plans_the_discs_the_pack_then_writes() {
    if !common::have("isoinfo") {
        return;
    }
    let tmp = common::tempdir();
    let (key, _) = common::keygen(&tmp.path().join("keys"), "site");
    let source = layout(tmp.path());
    let out = tmp.path().join("bundle");
    let args = ["--disc-size", "1200000", "--volume-size", "400KiB", "--iso", "--no-installer"];
    let o = pack_command(&key, &out, &source, &args).args(["--dry-run", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let dry: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!out.exists(), "a dry run writes nothing");
    let human = pack_command(&key, &out, &source, &args).arg("--dry-run").output().unwrap();
    let stderr = text(&human.stderr);
    assert!(stderr.contains("2 disc(s) of 1.1 MiB (1200000 bytes), one ISO 9660 image each"), "{stderr}");
    assert!(stderr.contains("  OCP_2OF2: ocp.0003.tar (image at most "), "{stderr}");

    let doc = pack(&key, &out, &source, &args);
    let planned: Vec<(String, Vec<String>)> = dry["discs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let v = d["volumes"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
            (d["label"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(planned, discs(&doc), "the dry run's discs are the pack's");
    for (d, image) in dry["discs"].as_array().unwrap().iter().zip(doc["disc_images"].as_array().unwrap()) {
        let (bound, size) = (d["image_bytes"].as_u64().unwrap(), image["size"].as_u64().unwrap());
        assert!(size <= bound && bound <= 1_200_000, "image {size}, planned at most {bound}");
    }
}

/// An OCI layout in `dir` of one image whose layers are sparse files of zeros of `sizes`
/// bytes (cheap to make, read at memory speed); returns its source.
fn sparse_layout(dir: &Path, sizes: &[u64]) -> String {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| {
        let hex = common::sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len() as u64)
    };
    let zeros = vec![0u8; 1 << 20];
    let mut layers = Vec::new();
    for &size in sizes {
        let mut hasher = sha2::Sha256::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            hasher.update(&zeros[..n]);
            left -= n as u64;
        }
        let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::File::create(blobs.join(&hex)).unwrap().set_len(size).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{hex}"), "size": size }));
    }
    let config = put(&serde_json::to_vec(&serde_json::json!({ "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [] } }))
    .unwrap());
    let manifest = put(&serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1 },
        "layers": layers }))
    .unwrap());
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.0, "size": manifest.1,
        "annotations": { "org.opencontainers.image.ref.name": "big" } }] });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    format!("oci:{}", dir.display())
}

/// Must-show 2 at full size: `pack --media dvd --iso` of 4.6 GB over two DVDs.
#[test]
fn dvd_images_fit_a_dvd_list_their_files_and_disc_two_verifies_alone() {
    if !have_readers() {
        return;
    }
    const DVD: u64 = 4_700_372_992;
    // On the local disk (the temp dir may be a tmpfs): two DVD images are written there.
    let tmp = tempfile::Builder::new().prefix("airlift-dvd").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (key, public) = common::keygen(&tmp.path().join("keys"), "site");
    // With the executable, more than two DVD volumes (2,316,632,064 bytes each): two discs.
    let source = sparse_layout(&tmp.path().join("layout"), &[2_300_000_000, 2_300_000_001]);
    let out = tmp.path().join("bundle");
    let started = std::time::Instant::now();
    let doc = pack(&key, &out, &source, &["--media", "dvd", "--iso"]);
    eprintln!("pack --media dvd --iso of 4.6 GB: {:?}", started.elapsed());
    let discs = discs(&doc);
    assert_eq!(discs.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), [2, 1], "{doc}");
    for (image, (label, volumes)) in doc["disc_images"].as_array().unwrap().iter().zip(&discs) {
        let iso = out.join(image["file"].as_str().unwrap());
        let bytes = std::fs::metadata(&iso).unwrap().len();
        assert!(bytes <= DVD, "{} is {bytes} bytes, a DVD holds {DVD}", iso.display());
        let mut expected: BTreeSet<String> = shared_files().into_iter().chain(volumes.iter().cloned()).collect();
        expected.insert("airlift".into());
        assert_eq!(xorriso_files(&iso), expected, "xorriso -find {} ({label})", iso.display());
    }
    // The airlift copied off disc 1 runs.
    let copied = tmp.path().join("airlift");
    let disc1 = out.join("ocp.disc01.iso");
    common::run_ok(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&disc1)
            .arg("-extract")
            .arg("/airlift")
            .arg(&copied),
    );
    assert!(common::run_ok(Command::new(&copied).arg("--version")).contains(env!("CARGO_PKG_VERSION")));
    std::fs::remove_file(&disc1).unwrap();
    let Some(mounted) = mount(&out.join("ocp.disc02.iso"), &tmp.path().join("disc2")) else { return };
    let o = airlift().arg("verify").arg(&mounted.dir).arg("--key").arg(&public).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let states: Vec<&str> =
        report["volumes"].as_array().unwrap().iter().map(|v| v["status"].as_str().unwrap()).collect();
    assert_eq!(states, ["missing", "missing", "ok"], "{report}");
    eprintln!("the DVD test took {:?}", started.elapsed());
}
