//! One disc at a time (issue 15): a bundle read from several directories, `--wait-for-media`
//! asking for each disc in turn while volume files are moved in and out of a watched
//! directory (as a drive's mount point changes), a wrong disc named, a file still being
//! written left alone, per-disc verify reports merged into one evidence document.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, airlift, airlift_path, keygen, make_layout, sha256_hex};

const NAME: &str = "media";

/// Two bundles of the same name from the same images, sequence 1 (`a`, the one the tests
/// read) and sequence 2 (`b`, whose volumes are the wrong discs), of several volumes each.
struct Fixture {
    tmp: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    key: PathBuf,
    public: PathBuf,
    src: PathBuf,
    images: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = common::tempdir();
        let src = tmp.path().join("src");
        let images = make_layout(&src, &[&[90_000, 40_000], &[70_000, 20_000]], false);
        let (key, public) = keygen(&tmp.path().join("keys"), "site");
        let fx = Fixture { a: tmp.path().join("a"), b: tmp.path().join("b"), tmp, key, public, src, images };
        fx.pack("1");
        fx.pack("2");
        assert!(fx.volumes().len() >= 4, "several volumes: {:?}", fx.volumes());
        fx
    }

    fn pack(&self, sequence: &str) {
        let out = if sequence == "1" { &self.a } else { &self.b };
        airlift()
            .args(["pack", "--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB", "--name", NAME])
            .args(["--sequence", sequence, "--key"])
            .arg(&self.key)
            .arg("--out")
            .arg(out)
            .arg(format!("oci:{}", self.src.display()))
            .assert()
            .success();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The volume files of bundle `a`, in order.
    fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.a)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".tar"))
            .collect();
        v.sort();
        v
    }

    /// A directory `rel` holding the small files of `bundle` (manifest, SHA256SUMS, their
    /// signatures) when `small`, and copies of its volume `files`.
    fn disc(&self, rel: &str, bundle: &Path, small: bool, files: &[&str]) -> PathBuf {
        let dir = self.path(rel);
        std::fs::create_dir_all(&dir).unwrap();
        let smalls = [".manifest.json", ".manifest.json.minisig", ".SHA256SUMS", ".SHA256SUMS.minisig"];
        let smalls = smalls.iter().map(|s| format!("{NAME}{s}")).filter(|_| small);
        for f in smalls.chain(files.iter().map(|f| f.to_string())) {
            std::fs::copy(bundle.join(&f), dir.join(&f)).unwrap();
        }
        dir
    }

    fn verify(&self, dirs: &[&Path], args: &[&str]) -> (i32, Value, String) {
        let out = airlift().arg("verify").args(dirs).arg("--key").arg(&self.public).arg("--json").args(args).output();
        let out = out.unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap(), doc, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Every blob of the source in the layout `out`, intact, every image in its index, and
    /// skopeo reads them.
    fn assert_unpacked(&self, out: &Path) {
        for e in std::fs::read_dir(self.src.join("blobs/sha256")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let got = std::fs::read(out.join("blobs/sha256").join(&name)).unwrap_or_else(|_| panic!("{name} missing"));
            assert_eq!(sha256_hex(&got), name, "blob {name} corrupt");
        }
        let index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let listed: Vec<&str> =
            index["manifests"].as_array().unwrap().iter().filter_map(|m| m["digest"].as_str()).collect();
        for d in &self.images {
            assert!(listed.contains(&d.as_str()), "index.json lacks {d}");
        }
        if common::have("skopeo") {
            for reference in ["img-0", "img-1"] {
                common::run_ok(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:{reference}", out.display())));
            }
        }
    }
}

/// Move (rename) `file` of `from` into `dir`, whole at once, as a disc's files appear.
fn put(from: &Path, file: &str, dir: &Path) {
    let staged = dir.with_extension("staging");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::copy(from.join(file), staged.join(file)).unwrap();
    std::fs::rename(staged.join(file), dir.join(file)).unwrap();
}

/// A command running with its stderr read line by line, to follow what it asks for.
struct Running {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start airlift");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child: Some(child), lines, seen: Vec::new() }
    }

    /// The next line on stderr containing every one of `parts` (lines before it are kept
    /// in `seen`); fails after a minute, listing what was said.
    fn expect(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {parts:?} ({e}); stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Wait for the exit: its code and stdout.
    fn finish(mut self) -> (i32, String) {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        self.seen.extend(self.lines.try_iter());
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Must show 3: unpack started with only the small files and volume 1 in the watched
/// directory asks for each next volume; the test changes "discs" (the previous volume
/// removed, the next renamed in) as it asks. A disc already done is said once; a volume of
/// another bundle of the same name (another sequence) is named and the prompt repeats; the
/// right one is then accepted, and the images are complete.
#[test]
fn unpack_waits_for_each_disc_names_a_wrong_one_and_completes() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let w = fx.disc("drive", &fx.a, true, &[&vols[0]]);
    let out = fx.path("layout");
    let mut run = Running::start(
        Command::new(airlift_path())
            .args(["unpack", "--json", "--jobs", "1", "--wait-for-media"])
            .arg(&w)
            .arg("--key")
            .arg(&fx.public)
            .arg("--layout")
            .arg(&out),
    );
    for n in 1..vols.len() {
        run.expect(&["insert the disc holding", &vols[n], &w.display().to_string()]);
        if n == 1 {
            // The disc just read, touched: said done once, and asked again.
            std::fs::write(w.join("README"), b"disc 1").unwrap();
            run.expect(&[&vols[0], "done already"]);
            run.expect(&["insert the disc holding", &vols[1]]);
            // Another bundle's volume 2 under the right name: named, and asked again.
            std::fs::remove_file(w.join(&vols[0])).unwrap();
            put(&fx.b, &vols[1], &w);
            let wrong = run.expect(&["wrong disc"]);
            assert!(wrong.contains("another bundle") && wrong.contains("sequence 2"), "{wrong}");
            run.expect(&["insert the disc holding", &vols[1]]);
        }
        let _ = std::fs::remove_file(w.join(&vols[n - 1]));
        put(&fx.a, &vols[n], &w);
    }
    let (code, stdout) = run.finish();
    assert_eq!(code, 0, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["wrong_discs"].as_array().map(Vec::len), Some(1), "{doc:#}");
    for v in doc["volumes"].as_array().unwrap() {
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["seen"]["dir"], w.display().to_string(), "{v}");
    }
    fx.assert_unpacked(&out);
}

/// A bundle spread over two directories (the manifest only in the first) verifies whole,
/// each volume reported where it was found; `list` reads it too.
#[test]
fn verify_reads_volumes_from_several_directories() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let (odd, even): (Vec<&String>, Vec<&String>) =
        vols.iter().partition(|v| vols.iter().position(|x| x == *v).unwrap() % 2 == 0);
    let odd: Vec<&str> = odd.into_iter().map(String::as_str).collect();
    let even: Vec<&str> = even.into_iter().map(String::as_str).collect();
    let d1 = fx.disc("d1", &fx.a, true, &odd);
    let d2 = fx.disc("d2", &fx.a, false, &even);
    let (code, doc, stderr) = fx.verify(&[&d1, &d2], &[]);
    assert_eq!(code, 0, "{doc:#} {stderr}");
    for v in doc["volumes"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let dir = if odd.contains(&file) { &d1 } else { &d2 };
        assert_eq!(v["seen"]["dir"], dir.display().to_string(), "{v}");
    }
    airlift().arg("list").arg(&d2).arg(&d1).arg("--key").arg(&fx.public).assert().success();
}

/// Each disc verified alone at the gate: its volumes ok, the others missing (exit 3). The
/// two reports merged are the whole bundle (exit 0); one alone is incomplete (exit 3); a
/// report of another bundle is refused (exit 1); an unsigned string in a report is shown
/// escaped.
#[test]
fn per_disc_reports_merge_into_one_evidence_document() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let half = vols.len() / 2;
    let first: Vec<&str> = vols[..half].iter().map(String::as_str).collect();
    let second: Vec<&str> = vols[half..].iter().map(String::as_str).collect();
    let d1 = fx.disc("disc1", &fx.a, true, &first);
    let d2 = fx.disc("disc2", &fx.a, true, &second);
    let db = fx.disc("other", &fx.b, true, &first);
    let mut reports = Vec::new();
    for (dir, name) in [(&d1, "r1.json"), (&d2, "r2.json"), (&db, "rb.json")] {
        let (code, doc, _) = fx.verify(&[dir], &[]);
        assert_eq!(code, 3, "{doc:#}");
        for v in doc["volumes"].as_array().unwrap() {
            let here = dir.join(v["file"].as_str().unwrap()).exists();
            assert_eq!(v["status"], if here { "ok" } else { "missing" }, "{v}");
        }
        let path = fx.path(name);
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        reports.push(path);
    }
    let evidence = |paths: &[&PathBuf]| airlift().arg("evidence").args(paths).arg("--json").output().unwrap();
    let out = evidence(&[&reports[0], &reports[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["volumes"].as_array().unwrap().iter().all(|v| v["status"] == "ok"), "{doc:#}");
    assert_eq!(evidence(&[&reports[0]]).status.code(), Some(3));
    let out = evidence(&[&reports[0], &reports[2]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reports of different bundles are not merged"));
    // A forged report: its strings never reach the terminal raw.
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&reports[1]).unwrap()).unwrap();
    forged["volumes"][half]["seen"]["dir"] = Value::from("/mnt/\u{1b}[2Jcdrom");
    std::fs::write(fx.path("forged.json"), serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = airlift().arg("evidence").arg(&reports[0]).arg(fx.path("forged.json")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}') && text.contains("\\u{1b}[2J"), "{text}");
}

/// A directory holding another bundle's manifest of the same name is named (which bundle,
/// which sequence) and not read: exit 1.
#[test]
fn a_directory_of_another_bundle_is_named_and_not_read() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let d1 = fx.disc("disc1", &fx.a, true, &[&vols[0]]);
    let db = fx.disc("other", &fx.b, true, &[&vols[1]]);
    let (code, doc, _) = fx.verify(&[&d1, &db], &[]);
    assert_eq!(code, 1, "{doc:#}");
    let problems = doc["problems"].to_string();
    assert!(problems.contains(&format!("{} holds bundle 'media'", db.display())), "{problems}");
    assert!(problems.contains("sequence 2") && problems.contains("not of bundle 'media'"), "{problems}");
    assert_eq!(doc["volumes"][1]["status"], "missing", "{doc:#}");
}

/// With an empty drive, verify asks for any disc; a volume arriving by a slow copy is
/// waited for until whole, never read early (it would be reported truncated).
#[test]
fn a_volume_still_being_written_is_not_read_before_it_is_whole() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let w = fx.path("drive");
    std::fs::create_dir_all(&w).unwrap();
    let mut run = Running::start(
        Command::new(airlift_path())
            .args(["verify", "--json", "--wait-for-media"])
            .arg(&w)
            .arg("--key")
            .arg(&fx.public),
    );
    run.expect(&["insert a disc of the bundle into"]);
    for f in ["SHA256SUMS", "SHA256SUMS.minisig", "manifest.json.minisig", "manifest.json"] {
        put(&fx.a, &format!("{NAME}.{f}"), &w);
    }
    for v in &vols[..vols.len() - 1] {
        put(&fx.a, v, &w);
    }
    let last = vols.last().unwrap();
    let bytes = std::fs::read(fx.a.join(last)).unwrap();
    let mut file = std::fs::File::create(w.join(last)).unwrap();
    file.write_all(&bytes[..bytes.len() / 2]).unwrap();
    run.expect(&[last, &format!("{} of {} bytes: waiting for the rest", bytes.len() / 2, bytes.len())]);
    file.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(file);
    let (code, stdout) = run.finish();
    assert_eq!(code, 0, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(doc["volumes"].as_array().unwrap().iter().all(|v| v["status"] == "ok"), "{doc:#}");
}

/// `--wait-timeout`: no disc needed within it ends the wait; the report names what is
/// still missing (exit 3). With no disc at all, unpack says none arrived (exit 3).
#[test]
fn wait_timeout_ends_with_what_is_missing() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let w = fx.disc("drive", &fx.a, true, &[&vols[0]]);
    let (code, doc, stderr) = fx.verify(&[], &["--wait-for-media", w.to_str().unwrap(), "--wait-timeout", "1s"]);
    assert_eq!(code, 3, "{doc:#}");
    assert!(stderr.contains("giving up"), "{stderr}");
    let missing: Vec<&str> = doc["missing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(missing, vols[1..].iter().map(String::as_str).collect::<Vec<_>>());
    let empty = fx.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = airlift()
        .args(["unpack", "--wait-timeout", "1s", "--wait-for-media"])
        .arg(&empty)
        .arg("--key")
        .arg(&fx.public)
        .arg("--layout")
        .arg(fx.path("layout"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no disc of the bundle arrived"));
}

/// A manifest that plans discs (re-signed here with stock minisign, as pack --iso will
/// write it): the prompt names the disc by label and the files still needed on it, and the
/// report says on which disc each volume was seen.
#[test]
fn a_disc_plan_names_the_disc_to_insert_and_where_each_volume_was_seen() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let vols = fx.volumes();
    let manifest = fx.a.join(format!("{NAME}.manifest.json"));
    let comment = crate::tamper::trusted_comment(&fx.a.join(format!("{NAME}.manifest.json.minisig")));
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let (one, two) = vols.split_at(2);
    m["discs"] = serde_json::json!({ "capacity": 1_000_000, "discs": [
        { "label": "MEDIA_1OF2", "files": one }, { "label": "MEDIA_2OF2", "files": two } ] });
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    crate::tamper::minisign_sign(&fx.key, &manifest, &comment);
    let w = fx.disc("drive", &fx.a, true, one.iter().map(String::as_str).collect::<Vec<_>>().as_slice());
    let mut run = Running::start(
        Command::new(airlift_path())
            .args(["verify", "--json", "--wait-for-media"])
            .arg(&w)
            .arg("--key")
            .arg(&fx.public),
    );
    let asked = run.expect(&["insert disc MEDIA_2OF2"]);
    assert!(asked.contains(&format!("({})", two.join(", "))), "{asked}");
    for f in one {
        std::fs::remove_file(w.join(f)).unwrap();
    }
    for f in two {
        put(&fx.a, f, &w);
    }
    let (code, stdout) = run.finish();
    assert_eq!(code, 0, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    for v in doc["volumes"].as_array().unwrap() {
        let label = if one.contains(&v["file"].as_str().unwrap().to_string()) { "MEDIA_1OF2" } else { "MEDIA_2OF2" };
        assert_eq!(v["seen"]["disc"], label, "{v}");
    }
    // The evidence says which discs were seen, and when.
    std::fs::write(fx.path("report.json"), &stdout).unwrap();
    let o = airlift().arg("evidence").arg(fx.path("report.json")).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let evidence: Value = serde_json::from_slice(&o.stdout).unwrap();
    let discs: Vec<&str> = evidence["discs"].as_array().unwrap().iter().filter_map(|d| d["label"].as_str()).collect();
    assert_eq!(discs, ["MEDIA_1OF2", "MEDIA_2OF2"], "{evidence:#}");
    assert!(
        evidence["discs"][1]["seen"][0]["at"].as_str().unwrap()
            >= evidence["discs"][0]["seen"][0]["at"].as_str().unwrap()
    );
}

/// SIGTERM while unpack waits for a disc ends it; run again with the rest, it resumes from
/// its journal (what the first disc gave is not read again) and completes.
#[test]
fn an_unpack_stopped_while_waiting_resumes() {
    let fx = Fixture::new();
    let vols = fx.volumes();
    let w = fx.disc("drive", &fx.a, true, &[&vols[0]]);
    let out = fx.path("layout");
    let mut run = Running::start(
        Command::new(airlift_path())
            .args(["unpack", "--wait-for-media"])
            .arg(&w)
            .arg("--key")
            .arg(&fx.public)
            .arg("--layout")
            .arg(&out),
    );
    run.expect(&["insert the disc holding", &vols[1]]);
    let pid = run.child.as_ref().unwrap().id();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let (code, _) = run.finish();
    assert_ne!(code, 0, "unpack ended by SIGTERM");
    let rest: Vec<&str> = vols[1..].iter().map(String::as_str).collect();
    let d2 = fx.disc("rest", &fx.a, true, &rest);
    let o =
        airlift().arg("unpack").arg(&d2).arg("--key").arg(&fx.public).arg("--layout").arg(&out).arg("--json").output();
    let o = o.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["already_complete"]["from_journal"].as_u64().unwrap() > 0, "{doc:#}");
    fx.assert_unpacked(&out);
}
