//! `airlift unpack --to docker://…`: pushing a bundle into an existing registry (Debian's
//! docker-registry, TLS and htpasswd), checked with skopeo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::distribution::Distribution;
use crate::common::{airlift, airlift_path, make_layout, pack_sources, tempdir, testdata, testdata_digest};

const REFS: [&str; 4] = ["app-00", "app-00-latest", "app-01", "multi"];

/// Pack the testdata layout into DIR/bundle; returns (bundle, public key).
fn pack(dir: &Path) -> (PathBuf, PathBuf) {
    pack_sources(dir, &[format!("oci:{}", testdata("layout").display())])
}

/// The blobs of the staging store at DIR/staging that are not manifests or indexes
/// (what a push uploads), with their sizes.
fn staged_blobs(dir: &Path) -> Vec<(String, u64)> {
    let blobs = dir.join("staging/blobs/sha256");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        let manifest = serde_json::from_slice::<Value>(&bytes)
            .is_ok_and(|v| v.get("layers").is_some() || v.get("manifests").is_some());
        if !manifest {
            out.push((format!("sha256:{}", e.file_name().to_string_lossy()), bytes.len() as u64));
        }
    }
    out
}

/// The push journal in the staging store at DIR/staging (there is one bundle and one
/// registry), whole lines only.
fn journal_lines(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("staging/.airlift/push")) else { return Vec::new() };
    let mut lines = Vec::new();
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        lines.extend(whole.lines().map(str::to_string));
    }
    lines
}

/// `unpack BUNDLE --to docker://HOST/PREFIX --json`, staging in DIR/staging.
fn push(dist: &Distribution, dir: &Path, prefix: &str, authfile: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    airlift()
        .arg("unpack")
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .args(["--to", &format!("docker://{}/{prefix}", dist.host())])
        .arg("--authfile")
        .arg(authfile)
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(dir.join("staging"))
        .arg("--json")
        .args(extra)
        .assert()
}

fn doc(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).expect("one JSON document")
}

#[test]
fn push_mirrors_every_image_with_identical_digests_and_a_rerun_pushes_nothing() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    let authfile = dist.authfile(tmp.path());

    let first = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&first);
    assert!(d["push"]["pushed"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["push"]["images"].as_array().unwrap().len(), REFS.len(), "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("mirror/layout:{r}")), testdata_digest(r), "{r}");
    }
    // The multi-arch index's children are there by digest too.
    let multi = testdata_digest("multi");
    let raw = std::fs::read(testdata("layout").join("blobs/sha256").join(multi.trim_start_matches("sha256:"))).unwrap();
    let children: Value = serde_json::from_slice(&raw).unwrap();
    for child in children["manifests"].as_array().unwrap() {
        let c = child["digest"].as_str().unwrap();
        assert_eq!(dist.digest(&format!("mirror/layout@{c}")), c);
    }

    // Again: the journal says everything was accepted; nothing is sent again.
    let again = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&again);
    assert_eq!(d["push"]["pushed"], 0, "{d}");
    assert_eq!(d["push"]["mounted"], 0, "{d}");
    assert!(d["push"]["skipped"].as_u64().unwrap() > 0, "{d}");

    // Without the journal, HEAD finds everything there.
    std::fs::remove_dir_all(tmp.path().join("staging/.airlift/push")).unwrap();
    let heads = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(0);
    let d = doc(&heads);
    assert_eq!(d["push"]["pushed"], 0, "{d}");
    assert_eq!(d["push"]["bytes"], 0, "{d}");
}

#[test]
fn push_to_a_second_repository_mounts_and_large_blobs_go_in_chunks() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    let authfile = dist.authfile(tmp.path());
    // Tiny chunks: every blob larger than 512 bytes goes as PATCH chunks.
    let first = push(&dist, tmp.path(), "one", &authfile, &["--upload-chunk", "512"]).code(0);
    let d = doc(&first);
    assert_eq!(d["push"]["mounted"], 0, "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("one/layout:{r}")), testdata_digest(r), "{r}");
    }
    // Another prefix on the same registry: blobs are mounted from one/layout, not uploaded.
    let second = push(&dist, tmp.path(), "two", &authfile, &[]).code(0);
    let d = doc(&second);
    assert!(d["push"]["mounted"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["push"]["bytes"], 0, "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("two/layout:{r}")), testdata_digest(r), "{r}");
    }
}

#[test]
fn push_with_wrong_credentials_exits_2_naming_registry_and_repository() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    pack(tmp.path());
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:wrong", dist.user));
    let authfile = tmp.path().join("wrong.json");
    std::fs::write(&authfile, serde_json::json!({ "auths": { dist.host(): { "auth": auth } } }).to_string()).unwrap();
    let failed = push(&dist, tmp.path(), "mirror", &authfile, &[]).code(2);
    let d = doc(&failed);
    let text = d.to_string();
    assert!(text.contains(&dist.host()) && text.contains("mirror/layout"), "{text}");
    assert!(text.contains("rejected the credentials"), "{text}");
}

#[test]
fn push_to_an_unknown_host_exits_2() {
    let tmp = tempdir();
    pack(tmp.path());
    let out = airlift()
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .args(["--to", "docker://no-such-host.invalid:5000/mirror", "--cache"])
        .arg(tmp.path().join("staging"))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

#[test]
fn to_conflicts_with_layout_and_root() {
    let tmp = tempdir();
    for other in ["--layout", "--root"] {
        airlift()
            .args(["unpack", "b", "--key", "k", "--to", "docker://localhost:1/x", other])
            .arg(tmp.path())
            .assert()
            .code(2);
    }
}

#[test]
fn a_parallel_push_of_three_layouts_uploads_each_blob_once_and_mounts_the_shared_ones() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    // app and tools share their first three layers (same seeds and sizes): par/tools
    // mounts them from par/app.
    let app = make_layout(&tmp.path().join("app"), &[&[300_000, 200_000], &[300_000, 200_000, 100_000]], true);
    let tools = make_layout(&tmp.path().join("tools"), &[&[300_000, 200_000, 100_000, 50_000]], true);
    let sources: Vec<String> = [testdata("layout"), tmp.path().join("app"), tmp.path().join("tools")]
        .iter()
        .map(|p| format!("oci:{}", p.display()))
        .collect();
    pack_sources(tmp.path(), &sources);
    let authfile = dist.authfile(tmp.path());

    let first = push(&dist, tmp.path(), "par", &authfile, &["--parallel", "8"]).code(0);
    let d = doc(&first);
    // Every distinct blob uploaded once, the shared ones mounted, not sent again.
    let staged = staged_blobs(tmp.path());
    assert_eq!(d["push"]["bytes"].as_u64(), Some(staged.iter().map(|b| b.1).sum::<u64>()), "{d}");
    assert_eq!(d["push"]["mounted"], 3, "{d}");
    // Images reported in bundle order.
    let digests = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|i| i["digest"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(digests(&d["push"]["images"]), digests(&d["images"]), "{d}");
    assert_eq!(d["push"]["images"].as_array().unwrap().len(), REFS.len() + 3, "{d}");
    for r in REFS {
        assert_eq!(dist.digest(&format!("par/layout:{r}")), testdata_digest(r), "{r}");
    }
    for (n, m) in app.iter().enumerate() {
        assert_eq!(&dist.digest(&format!("par/app:img-{n}")), m);
    }
    assert_eq!(dist.digest("par/tools:img-0"), tools[0]);

    let again = push(&dist, tmp.path(), "par", &authfile, &["--parallel", "8"]).code(0);
    let d = doc(&again);
    for count in ["pushed", "mounted", "bytes"] {
        assert_eq!(d["push"][count], 0, "{count}: {d}");
    }
    assert!(d["push"]["skipped"].as_u64().unwrap() > 0, "{d}");
}

#[test]
fn a_push_killed_part_way_resumes_without_uploading_again_what_the_journal_has() {
    let Some(dist) = Distribution::start() else { return };
    let tmp = tempdir();
    // Twelve 1 MiB layers sent in 64 KiB chunks, two at a time: the push lasts long
    // enough to be killed part way.
    let layout = tmp.path().join("app");
    let digests = make_layout(&layout, &[&[1 << 20; 4], &[1 << 20; 4], &[1 << 20; 4]], false);
    pack_sources(tmp.path(), &[format!("oci:{}", layout.display())]);
    let authfile = dist.authfile(tmp.path());
    let mut child = Command::new(airlift_path())
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .args(["--to", &format!("docker://{}/killed", dist.host())])
        .arg("--authfile")
        .arg(&authfile)
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(tmp.path().join("staging"))
        .args(["--upload-chunk", "64KiB", "--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blob_lines = || journal_lines(tmp.path()).into_iter().filter(|l| l.starts_with("blob ")).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while blob_lines() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "the push ended before it could be killed");
        assert!(Instant::now() < deadline, "the push journaled no blobs in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let staged = staged_blobs(tmp.path());
    let journaled: BTreeSet<String> = journal_lines(tmp.path())
        .iter()
        .filter_map(|l| l.strip_prefix("blob killed/app "))
        .map(str::to_string)
        .collect();
    let journaled_bytes: u64 = staged.iter().filter(|(d, _)| journaled.contains(d)).map(|b| b.1).sum();
    let total: u64 = staged.iter().map(|b| b.1).sum();
    assert!(journaled.len() >= 3 && journaled.len() < staged.len(), "journaled {journaled:?} of {staged:?}");
    assert!(journal_lines(tmp.path()).iter().all(|l| !l.starts_with("tag ")), "tags went before the blobs");

    let rerun = push(&dist, tmp.path(), "killed", &authfile, &["--upload-chunk", "64KiB", "--parallel", "2"]).code(0);
    let d = doc(&rerun);
    // What the journal had was neither uploaded nor asked for again; the rest was (or
    // was found there: the registry may have completed an upload the kill cut short of
    // its journal line).
    let bytes = d["push"]["bytes"].as_u64().unwrap();
    assert!(
        bytes + journaled_bytes <= total,
        "uploaded {bytes} again, the journal had {journaled_bytes} of {total}: {d}"
    );
    assert!(bytes > 0, "{d}");
    assert!(d["push"]["skipped"].as_u64().unwrap() >= journaled.len() as u64, "{d}");
    assert_eq!(d["push"]["mounted"], 0, "{d}");
    for (n, m) in digests.iter().enumerate() {
        assert_eq!(&dist.digest(&format!("killed/app:img-{n}")), m);
    }
    // And a third run has nothing to do.
    let d = doc(&push(&dist, tmp.path(), "killed", &authfile, &[]).code(0));
    assert_eq!(d["push"]["pushed"], 0, "{d}");
    assert_eq!(d["push"]["bytes"], 0, "{d}");
}

#[test]
fn parallel_needs_to_and_stays_between_1_and_64() {
    let tmp = tempdir();
    airlift().args(["unpack", "b", "--key", "k", "--parallel", "2", "--layout"]).arg(tmp.path()).assert().code(2);
    for n in ["0", "65"] {
        airlift()
            .args(["unpack", "b", "--key", "k", "--to", "docker://localhost:1/x", "--parallel", n])
            .assert()
            .code(2);
    }
}
