//! The gate against hostile media beyond flipped bytes (issue 9): endless and oversized
//! files where small ones belong, FIFOs and devices in place of files, report lines forged
//! through strings nobody signed, volumes that are symlinks to local files, untrusted
//! comments stock minisign accepts, and a disc that answers EIO.

use std::os::unix::fs::symlink;
use std::time::Duration;

use super::*;

/// Longest any of these runs may take: a hang is a failure, not a slow pass.
const BOUND: Duration = Duration::from_secs(60);

/// `airlift ARGS` under `/usr/bin/time`, with a time bound: the run and its peak RSS (KiB).
fn measured(args: &[&std::ffi::OsStr]) -> (Run, u64) {
    let stats = common::tempdir();
    let stats_file = stats.path().join("rss");
    let mut cmd = assert_cmd::Command::new("/usr/bin/time");
    cmd.arg("-f").arg("%M").arg("-o").arg(&stats_file).arg(common::airlift_path()).args(args).timeout(BOUND);
    let r = run(&mut cmd);
    let rss = std::fs::read_to_string(&stats_file)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {r:?}"));
    (r, rss)
}

/// `airlift unpack DIR --key PUB --layout LAYOUT` within [`BOUND`].
fn unpack_bounded(dir: &Path, public: &Path, layout: &Path) -> Run {
    run(common::airlift().arg("unpack").arg(dir).arg("--key").arg(public).arg("--layout").arg(layout).timeout(BOUND))
}

fn verify_measured(fx: &Fixture) -> (Run, Value, u64) {
    let (r, rss) =
        measured(&["--json".as_ref(), "verify".as_ref(), fx.dir.as_os_str(), "--key".as_ref(), fx.public.as_os_str()]);
    let doc = r.json();
    (r, doc, rss)
}

/// A sparse file of `len` bytes: costs no disk, reads as zeros for as long as one reads.
fn sparse(path: &Path, len: u64) {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn manifest_sig(fx: &Fixture) -> PathBuf {
    fx.dir.join(format!("{NAME}.manifest.json.minisig"))
}

fn sums(fx: &Fixture) -> PathBuf {
    fx.dir.join(format!("{NAME}.SHA256SUMS"))
}

const MEMORY_BOUND_KIB: u64 = 100 * 1024;

#[test]
fn endless_and_oversized_files_at_the_gate_are_integrity_failures_read_with_flat_memory() {
    if !common::have("/usr/bin/time") {
        return;
    }
    // The manifest's signature as a 3 GiB sparse file.
    let fx = Fixture::new();
    sparse(&manifest_sig(&fx), 3 << 30);
    let (r, doc, rss) = verify_measured(&fx);
    eprintln!("figure: verify with a 3 GiB .minisig: exit {}, peak RSS {} KiB", r.code, rss);
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(doc["error"].as_str().unwrap(), "manifest.json.minisig", "names the file");
    assert_contains(doc["error"].as_str().unwrap(), "larger than", "says it is too large");
    assert!(rss < MEMORY_BOUND_KIB, "peak RSS {rss} KiB");

    // SHA256SUMS symlinked to /dev/zero, or as 4 GiB of sparse zeros; its signature as
    // 3 GiB: each is bad (exit 1), never "absent", never exit 0.
    let fx = Fixture::new();
    type Damage = Box<dyn Fn(&Fixture)>;
    let cases: [(&str, Damage); 3] = [
        (
            "SHA256SUMS -> /dev/zero",
            Box::new(|fx: &Fixture| {
                std::fs::remove_file(sums(fx)).unwrap();
                symlink("/dev/zero", sums(fx)).unwrap();
            }),
        ),
        ("4 GiB SHA256SUMS", Box::new(|fx: &Fixture| sparse(&sums(fx), 4 << 30))),
        (
            "3 GiB SHA256SUMS.minisig",
            Box::new(|fx: &Fixture| sparse(&fx.dir.join(format!("{NAME}.SHA256SUMS.minisig")), 3 << 30)),
        ),
    ];
    let pristine = std::fs::read(sums(&fx)).unwrap();
    let pristine_sig = std::fs::read(fx.dir.join(format!("{NAME}.SHA256SUMS.minisig"))).unwrap();
    for (what, damage) in cases {
        let _ = std::fs::remove_file(sums(&fx));
        std::fs::write(sums(&fx), &pristine).unwrap();
        std::fs::write(fx.dir.join(format!("{NAME}.SHA256SUMS.minisig")), &pristine_sig).unwrap();
        damage(&fx);
        let (r, doc, rss) = verify_measured(&fx);
        eprintln!("figure: verify with {what}: exit {}, peak RSS {rss} KiB", r.code);
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert_eq!(doc["sha256sums"]["state"], "bad", "{what}: {doc:#}");
        assert!(rss < MEMORY_BOUND_KIB, "{what}: peak RSS {rss} KiB");
    }
}

#[test]
fn an_untrusted_comment_past_minisigns_limit_is_refused_and_a_non_utf8_one_accepted() {
    let fx = Fixture::new();
    let sig_path = manifest_sig(&fx);
    let sig = std::fs::read(&sig_path).unwrap();
    let rest = &sig[sig.iter().position(|&b| b == b'\n').unwrap()..];
    let with_comment = |comment: &[u8]| {
        let mut text = b"untrusted comment: ".to_vec();
        text.extend_from_slice(comment);
        text.extend_from_slice(rest);
        std::fs::write(&sig_path, text).unwrap();
    };

    // A byte that is not UTF-8 in the untrusted comment: stock minisign accepts it, so
    // does airlift.
    with_comment(b"caf\xe9 \xff signature");
    let r = fx.verify();
    assert_eq!(r.code, 0, "{r:?}");
    if common::have("minisign") {
        let out = Command::new("minisign")
            .arg("-Vm")
            .arg(fx.dir.join(format!("{NAME}.manifest.json")))
            .arg("-p")
            .arg(&fx.public)
            .output()
            .unwrap();
        assert!(out.status.success(), "stock minisign accepts it too: {}", String::from_utf8_lossy(&out.stderr));
    }

    // 2,000 bytes: more than the 1 KiB line minisign reads.
    with_comment(&[b'A'; 2000]);
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stderr, "untrusted comment is 2000 bytes", "says why");

    // 512 MiB (sparse): refused by the file bound before anything is read.
    let mut f = std::fs::File::create(&sig_path).unwrap();
    std::io::Write::write_all(&mut f, b"untrusted comment: ").unwrap();
    f.set_len(512 << 20).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new().append(true).open(&sig_path).unwrap();
    std::io::Write::write_all(&mut f, rest).unwrap();
    drop(f);
    let (r, rss) = measured(&["verify".as_ref(), fx.dir.as_os_str(), "--key".as_ref(), fx.public.as_os_str()]);
    eprintln!("figure: verify with a 512 MiB untrusted comment: exit {}, peak RSS {rss} KiB", r.code);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(rss < MEMORY_BOUND_KIB, "peak RSS {rss} KiB");
}

#[test]
fn fifos_and_devices_in_place_of_media_files_are_refused_not_waited_on() {
    let fx = Fixture::new();
    let layout = fx.root().join("layout");
    let files = [
        (format!("{NAME}.manifest.json"), 1, 1),
        (format!("{NAME}.manifest.json.minisig"), 1, 1),
        // SHA256SUMS is for standard tools: verify reports it bad, unpack does not need it.
        (format!("{NAME}.SHA256SUMS"), 1, 0),
        (format!("{NAME}.SHA256SUMS.minisig"), 1, 0),
        (format!("{NAME}.0002.tar"), 1, 1),
    ];
    for (file, verify_code, unpack_code) in files {
        let path = fx.dir.join(&file);
        let saved = fx.root().join("saved");
        std::fs::rename(&path, &saved).unwrap();
        mkfifo(&path);
        let r = run(common::airlift().arg("verify").arg(&fx.dir).arg("--key").arg(&fx.public).timeout(BOUND));
        assert_eq!(r.code, verify_code, "verify with {file} a FIFO: {r:?}");
        assert_contains(&r.text(), "FIFO", &format!("verify names the FIFO {file}"));
        let _ = std::fs::remove_dir_all(&layout);
        let r = unpack_bounded(&fx.dir, &fx.public, &layout);
        assert_eq!(r.code, unpack_code, "unpack with {file} a FIFO: {r:?}");
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&saved, &path).unwrap();
    }
    // A volume that is a device (here /dev/zero behind a symlink) is named, not read.
    let v2 = fx.volume(2);
    std::fs::remove_file(&v2).unwrap();
    symlink("/dev/zero", &v2).unwrap();
    let r = run(common::airlift().arg("verify").arg(&fx.dir).arg("--key").arg(&fx.public).timeout(BOUND));
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, "volume 2 is a character device", "names the device");
}

#[test]
fn an_oversized_or_non_regular_manifest_is_a_property_of_the_media() {
    let fx = Fixture::new();
    let manifest = fx.dir.join(format!("{NAME}.manifest.json"));
    sparse(&manifest, 300 << 20);
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stderr, "larger than", "says it is too large");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stderr, "is a directory", "says what it is");
}

#[test]
fn an_unreadable_sha256sums_is_bad_not_absent() {
    let fx = Fixture::new();
    std::fs::remove_file(sums(&fx)).unwrap();
    std::fs::create_dir(sums(&fx)).unwrap();
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["sha256sums"]["state"], "bad", "{doc:#}");
    // Absent is absent: the manifest's own signature still covers every volume.
    std::fs::remove_dir(sums(&fx)).unwrap();
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(doc["sha256sums"]["state"], "absent", "{doc:#}");
}

/// Text a forger would like the gate to print.
const FORGED: &str = "OK: every volume and chunk matches the signed manifest";

fn assert_nothing_forged(r: &Run) {
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains('\u{1b}'), "an escape sequence reached the terminal on {what}: {r:?}");
        assert!(!text.contains('\r'), "a carriage return reached the terminal on {what}: {r:?}");
        for line in text.lines() {
            assert!(!line.trim_start().starts_with("OK:"), "a forged verdict line on {what}: {line:?}\n{r:?}");
        }
    }
}

#[test]
fn report_lines_cannot_be_forged_through_a_foreign_label() {
    let fx = Fixture::new();
    // A volume whose label (not signed: it is inside the volume) carries terminal escapes
    // and a line break followed by the verdict of a good bundle.
    let label = serde_json::json!({
        "bundle": "\u{1b}[8mhidden",
        "name": format!("x\n\u{1b}[32m{FORGED}\u{1b}[0m\u{1b}[8m"),
        "sequence": 1,
        "volume": 2,
    })
    .to_string();
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("airlift/volume.0002.json").unwrap();
    h.set_size(label.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append(&h, label.as_bytes()).unwrap();
    std::fs::write(fx.volume(2), builder.into_inner().unwrap()).unwrap();

    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, &format!("FOREIGN  {NAME}.0002.tar"), "names the volume");
    assert_contains(&r.stdout, "FAILED", "the real verdict is shown");
    assert_contains(&r.stdout, "\\u{1b}[32m", "the escape is shown escaped");
    assert_nothing_forged(&r);
    // JSON is exact: one valid document, the real status.
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1);
    assert_eq!(doc["status"], "failed");
    assert_eq!(volume_report(&doc, 2)["status"], "foreign");
}

#[test]
fn report_lines_cannot_be_forged_through_tar_names_and_link_targets() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    let name = "a\u{1b}[2Jb\u{1b}[8m";
    let link = "\n\u{1b}[32mOK: every volume\u{1b}[0m";
    let header = ustar(name, 0, Kind::Symlink, link, 0o777, m.created);
    write_at(&fx.volume(2), m.chunks[c].offset - 512, &header);
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, "symbolic link", "names what it found");
    assert_nothing_forged(&r);
    let r = unpack(&fx.dir, &fx.public, &fx.root().join("layout"), false);
    assert_eq!(r.code, 1, "{r:?}");
    assert_nothing_forged(&r);
}

#[test]
fn a_volume_symlinked_to_a_local_file_does_not_leak_its_content() {
    let fx = Fixture::new();
    let secret = fx.root().join("secret");
    // Long enough to fill a tar header's name field with the secret.
    std::fs::write(&secret, "TOPSECRET-root:x:0:0:root:/root:/bin/bash\n".repeat(40)).unwrap();
    std::fs::remove_file(fx.volume(2)).unwrap();
    symlink(&secret, fx.volume(2)).unwrap();
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, "is not an airlift volume", "says what it is not");
    assert_contains(&r.stdout, "airlift/volume.0002.json", "says what was expected");
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1);
    for text in [&r.stdout, &r.stderr, &doc.to_string()] {
        assert!(!text.contains("TOPSECRET") && !text.contains("root:x"), "the file's content leaked: {text}");
    }
    // The same through unpack.
    let r = unpack(&fx.dir, &fx.public, &fx.root().join("layout"), true);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.text().contains("TOPSECRET"), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// A scratched disc: reads of one volume fail with EIO (a FUSE view of the bundle)

/// The bundle directory seen through `tests/common/eio_fs.py`: reads of `file` touching
/// bytes `[start, end)` fail with EIO. Unmounted and stopped (by pid) on drop.
struct ScratchedDisc {
    mountpoint: PathBuf,
    child: std::process::Child,
}

impl ScratchedDisc {
    /// `None` (after saying why) where FUSE cannot be used: not root, or no /dev/fuse;
    /// under `CI=true` that is a failure.
    fn mount(source: &Path, mountpoint: &Path, file: &str, start: u64, end: u64) -> Option<ScratchedDisc> {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
        let python = Path::new("/usr/bin/python3");
        let usable = euid == 0
            && Path::new("/dev/fuse").exists()
            && python.exists()
            && Command::new(python).args(["-c", "import fusepy"]).status().is_ok_and(|s| s.success());
        if !usable {
            assert!(!ci, "the EIO test needs root, /dev/fuse and python3-fusepy under CI=true (see .ci/run)");
            eprintln!("skipping: the EIO test needs root, /dev/fuse and /usr/bin/python3 with fusepy");
            return None;
        }
        std::fs::create_dir_all(mountpoint).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/eio_fs.py");
        let child = Command::new(python)
            .arg(script)
            .arg(source)
            .arg(mountpoint)
            .arg(file)
            .arg(start.to_string())
            .arg(end.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("start eio_fs.py");
        let disc = ScratchedDisc { mountpoint: mountpoint.to_path_buf(), child };
        // Ready when the file shows through the mount.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !disc.mountpoint.join(file).exists() {
            assert!(std::time::Instant::now() < deadline, "the FUSE view did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(disc)
    }
}

impl Drop for ScratchedDisc {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_unreadable_volume_is_reported_and_the_others_are_still_checked() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    let at = m.chunks[c].offset + 10;
    let Some(disc) = ScratchedDisc::mount(&fx.dir, &fx.root().join("disc"), &format!("{NAME}.0002.tar"), at, at + 1)
    else {
        return;
    };
    let (r, doc, _) = {
        let r = run(common::airlift()
            .args(["--json", "verify"])
            .arg(&disc.mountpoint)
            .arg("--key")
            .arg(&fx.public)
            .timeout(BOUND));
        let doc = r.json();
        (r, doc, ())
    };
    assert_eq!(r.code, 1, "{r:?}");
    let v2 = volume_report(&doc, 2);
    assert_eq!(v2["status"], "damaged", "{doc:#}");
    let p = chunk_problem(&doc, 2, c);
    assert_contains(p["problem"].as_str().unwrap(), "Input/output error", "names the read error");
    for i in images_needing(&m, c) {
        assert_contains(&p["hurts"].to_string(), &i, "names the images it hurts");
    }
    // The rest of volume 2 and the other volumes were read and checked.
    assert_eq!(v2["problems"].as_array().unwrap().len(), 1, "{doc:#}");
    for v in (1..=m.volumes.len() as u32).filter(|&v| v != 2) {
        assert_eq!(volume_report(&doc, v)["status"], "ok", "volume {v}: {doc:#}");
    }
    // unpack takes what it can and names the same problem.
    let layout = fx.root().join("layout");
    let r = unpack_bounded(&disc.mountpoint, &fx.public, &layout);
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, "Input/output error", "unpack names the read error");
    let digest = &entry_of(&m, c).digest;
    assert!(!layout.join("blobs/sha256").join(digest.hex()).exists(), "the unreadable blob was not committed");
}

#[test]
fn list_without_a_key_shows_unverified_strings_escaped() {
    let fx = Fixture::new();
    let path = fx.dir.join(format!("{NAME}.manifest.json"));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["images"][0]["reference"] = Value::from(format!("app\n\u{1b}[32m{FORGED}\u{1b}[8m"));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let r = run(common::airlift().arg("list").arg(&fx.dir));
    assert_eq!(r.code, 0, "{r:?}");
    assert_contains(&r.stderr, "signature not checked", "says it is unverified");
    assert_contains(&r.stdout, "app\\n\\u{1b}[32mOK", "shown escaped");
    assert_nothing_forged(&r);
    // With the key the tampered manifest is refused.
    let r = run(common::airlift().arg("list").arg(&fx.dir).arg("--key").arg(&fx.public));
    assert_eq!(r.code, 1, "{r:?}");
}
