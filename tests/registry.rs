//! The embedded registry with real clients: skopeo over TLS with the CA and credentials
//! `airlift install` made, 32 concurrent pullers with the server's memory watched, a
//! server killed with SIGKILL in the middle of a push, and `unpack --root` followed by
//! `serve`.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::registry::{digest_of, header, send, with_query, Image, Registry};
use crate::common::{self, run_ok, sha256_hex};

/// (reference name, manifest digest, media type) of every image in testdata/layout.
fn testdata_refs() -> Vec<(String, String, String)> {
    let index: Value = serde_json::from_slice(&std::fs::read(common::testdata("layout/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
                m["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn skopeo_raw_digest(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run skopeo");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    format!("sha256:{}", sha256_hex(&out.stdout))
}

/// Every blob of `layout` (an OCI layout skopeo wrote) equals the testdata blob of the same name.
fn assert_blobs_match_testdata(layout: &Path) {
    let src = common::testdata("layout/blobs/sha256");
    let mut n = 0;
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let got = std::fs::read(e.path()).unwrap();
        assert_eq!(sha256_hex(&got), name, "{}: content does not match its name", e.path().display());
        assert!(src.join(&name).is_file(), "pulled blob {name} is not one of the source's");
        n += 1;
    }
    assert!(n > 0, "nothing pulled into {}", layout.display());
}

#[test]
fn skopeo_pushes_and_pulls_testdata_over_tls_with_the_installed_ca_and_credentials() {
    if !common::have("skopeo") {
        return;
    }
    let reg = Registry::start();
    let layout = common::testdata("layout");
    let refs = testdata_refs();
    let digest_of_ref = |name: &str| refs.iter().find(|r| r.0 == name).unwrap().1.clone();

    // Push: one image, and a multi-arch index with --all.
    for (tag, all) in [("app-00", false), ("multi", true)] {
        let mut cmd = reg.skopeo("copy");
        cmd.arg("--preserve-digests").args(reg.skopeo_dest_args());
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(reg.docker_ref(&format!("testdata/app:{tag}")));
        run_ok(&mut cmd);
    }

    // The registry serves exactly the source's bytes.
    for tag in ["app-00", "multi"] {
        let want = digest_of_ref(tag);
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref(&format!("testdata/app:{tag}")));
        assert_eq!(skopeo_raw_digest(&mut cmd), want, "skopeo inspect --raw testdata/app:{tag}");
        let r = reg.head(&format!("/v2/testdata/app/manifests/{tag}"));
        assert_eq!(header(&r, "docker-content-digest"), Some(want.clone()), "HEAD testdata/app:{tag}");
    }
    let mut cmd = reg.skopeo("inspect");
    cmd.args(reg.skopeo_args()).arg(reg.docker_ref("testdata/app:app-00"));
    let info: Value = serde_json::from_str(&run_ok(&mut cmd)).expect("skopeo inspect prints JSON");
    assert_eq!(info["Digest"].as_str(), Some(digest_of_ref("app-00").as_str()));
    assert_eq!(info["Layers"].as_array().map(|l| l.len()), Some(3));
    // The children of the index are there by digest.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&digest_of_ref("multi")[7..])).unwrap())
            .unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let d = child["digest"].as_str().unwrap();
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref(&format!("testdata/app@{d}")));
        assert_eq!(skopeo_raw_digest(&mut cmd), d, "child {d} of the index");
    }

    let mut cmd = reg.skopeo("list-tags");
    cmd.args(reg.skopeo_args()).arg(reg.docker_ref("testdata/app"));
    let tags: Value = serde_json::from_str(&run_ok(&mut cmd)).expect("skopeo list-tags prints JSON");
    let mut tags: Vec<&str> = tags["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    assert_eq!(tags, ["app-00", "multi"]);

    // Pull back into a fresh OCI layout: same digests, same blobs.
    let out = common::tempdir();
    let pulled = out.path().join("pulled");
    for (tag, all) in [("app-00", false), ("multi", true)] {
        let mut cmd = reg.skopeo("copy");
        cmd.arg("--preserve-digests").args(reg.skopeo_src_args());
        if all {
            cmd.arg("--all");
        }
        cmd.arg(reg.docker_ref(&format!("testdata/app:{tag}"))).arg(format!("oci:{}:{tag}", pulled.display()));
        run_ok(&mut cmd);
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw"]).arg(format!("oci:{}:{tag}", pulled.display()));
        assert_eq!(skopeo_raw_digest(&mut cmd), digest_of_ref(tag), "pulled {tag}");
    }
    assert_blobs_match_testdata(&pulled);

    // Wrong credentials: skopeo is refused.
    let mut cmd = reg.skopeo("inspect");
    cmd.args(["--cert-dir"]).arg(&reg.cert_dir).args(["--creds", &format!("{}:wrong", reg.user)]);
    cmd.arg(reg.docker_ref("testdata/app:app-00"));
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "skopeo inspect with a wrong password succeeded");
    // Without the CA: TLS verification fails.
    let mut cmd = reg.skopeo("inspect");
    cmd.args(["--creds", &reg.creds()]).arg(reg.docker_ref("testdata/app:app-00"));
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "skopeo inspect trusted the registry without its CA");
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn thirty_two_concurrent_pullers_get_exact_bytes_and_server_memory_stays_flat() {
    const THREADS: usize = 32;
    const ROUNDS: usize = 10;
    let reg = Arc::new(Registry::start());
    let img = Image::new(100, &[4 << 20, 1 << 20, 64 << 10]);
    reg.push_image("load/app", "v1", &img);
    let pid = reg.pid();
    let idle = vm_rss_kib(pid).expect("VmRSS of the server");

    // Peak RSS, sampled continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Failures are recorded, not panicked on, so no thread leaves the barrier short.
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (reg, img, errors, barrier, bytes) =
                (reg.clone(), img.clone(), errors.clone(), barrier.clone(), bytes.clone());
            std::thread::spawn(move || {
                let client = reg.new_client();
                let get = |path: &str| -> Result<Vec<u8>, String> {
                    let r = client
                        .get(reg.url(path))
                        .basic_auth(&reg.user, Some(&reg.password))
                        .send()
                        .map_err(|e| format!("GET {path}: {e:#}"))?;
                    if r.status() != 200 {
                        return Err(format!("GET {path}: {}", r.status()));
                    }
                    let body = r.bytes().map_err(|e| format!("GET {path}: body: {e:#}"))?;
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    Ok(body.to_vec())
                };
                for round in 0..ROUNDS {
                    let result = (|| -> Result<(), String> {
                        let m = get("/v2/load/app/manifests/v1")?;
                        if m != img.manifest {
                            return Err("manifest differs".into());
                        }
                        let manifest: Value = serde_json::from_slice(&m).map_err(|e| e.to_string())?;
                        let mut descs = vec![manifest["config"].clone()];
                        descs.extend(manifest["layers"].as_array().unwrap().iter().cloned());
                        for d in descs {
                            let digest = d["digest"].as_str().unwrap();
                            let body = get(&format!("/v2/load/app/blobs/{digest}"))?;
                            if body.len() as u64 != d["size"].as_u64().unwrap() || digest_of(&body) != digest {
                                return Err(format!("blob {digest}: {} bytes that do not hash to it", body.len()));
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        errors.lock().unwrap().push(format!("thread {t} round {round}: {e}"));
                    }
                    barrier.wait();
                    barrier.wait();
                }
            })
        })
        .collect();

    let mut per_round = Vec::new();
    for _ in 0..ROUNDS {
        barrier.wait();
        per_round.push(vm_rss_kib(pid).expect("VmRSS"));
        barrier.wait();
    }
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let elapsed = started.elapsed();
    let peak = peak.load(Ordering::Relaxed);
    let total = bytes.load(Ordering::Relaxed);
    eprintln!(
        "load: {THREADS} threads x {ROUNDS} rounds, {} MiB in {elapsed:.1?}; server RSS idle {idle} KiB, \
         after each round {per_round:?} KiB, peak {peak} KiB",
        total >> 20
    );

    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "{} failed pulls:\n{}", errors.len(), errors.join("\n"));
    assert_eq!(
        total,
        (THREADS * ROUNDS) as u64 * (img.manifest.len() + img.blobs().iter().map(|b| b.len()).sum::<usize>()) as u64
    );
    assert!(peak < 100 * 1024, "server peak RSS {peak} KiB during the load (limit 100 MiB)");
    // Flat: the allocator warms up over the first rounds (per-thread arenas), then RSS must
    // level off. A leak grows with the work done, so it shows in the second half too.
    let half = &per_round[ROUNDS / 2 - 1..];
    let growth = half[half.len() - 1].saturating_sub(half[0]);
    assert!(growth < 8 * 1024, "server RSS grew {growth} KiB over the last {} rounds: {per_round:?}", half.len() - 1);
    let climbing = half.windows(2).all(|w| w[1] > w[0] + 512);
    assert!(!climbing, "server RSS rose by more than 512 KiB every round of the second half: {per_round:?}");
    // And the server still answers after the storm.
    reg.check_image("load/app", "v1", &img);
}

/// A request body that sends `first` bytes, signals, then blocks until released and fails.
struct StallingBody {
    data: Vec<u8>,
    pos: usize,
    stall_at: usize,
    reached: Option<mpsc::Sender<()>>,
    release: mpsc::Receiver<()>,
}

impl Read for StallingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.stall_at {
            if let Some(tx) = self.reached.take() {
                let _ = tx.send(());
            }
            let _ = self.release.recv();
            return Err(std::io::Error::other("client gave up"));
        }
        let n = buf.len().min(self.stall_at - self.pos).min(64 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_server_killed_mid_push_loses_nothing_committed() {
    let mut reg = Registry::start();
    let a = Image::new(200, &[3 << 20, 100 << 10]);
    reg.push_image("crash/a", "v1", &a);

    // B: config committed, big layer half-uploaded in a session, more in flight when killed.
    let b = Image::new(201, &[16 << 20]);
    let layer = b.layers[0].clone();
    let layer_d = digest_of(&layer);
    reg.push_blob("crash/b", &b.config);
    let loc = reg.start_upload("crash/b");
    let r = send(
        reg.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("0-{}", (4 << 20) - 1))
            .body(layer[..4 << 20].to_vec()),
    );
    assert_eq!(r.status(), 202);
    let loc = reg.location(&r);

    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let body = StallingBody {
        data: layer[4 << 20..].to_vec(),
        pos: 0,
        stall_at: 6 << 20,
        reached: Some(reached_tx),
        release: release_rx,
    };
    let client = reg.new_client();
    let patch = client
        .request(Method::PATCH, &loc)
        .basic_auth(&reg.user, Some(&reg.password))
        .header("content-type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(body));
    let inflight = std::thread::spawn(move || patch.send().map(|r| r.status()));
    reached_rx.recv_timeout(Duration::from_secs(60)).expect("the in-flight PATCH sent its bytes");
    // A monolithic PUT of another blob in flight too, from a second thread.
    let loc2 = reg.start_upload("crash/b");
    let (reached2_tx, reached2_rx) = mpsc::channel();
    let (release2_tx, release2_rx) = mpsc::channel();
    let other = common::noise(202, 8 << 20);
    let other_d = digest_of(&other);
    let body2 = StallingBody {
        data: other.clone(),
        pos: 0,
        stall_at: 5 << 20,
        reached: Some(reached2_tx),
        release: release2_rx,
    };
    let put = client
        .request(Method::PUT, with_query(&loc2, &format!("digest={other_d}")))
        .basic_auth(&reg.user, Some(&reg.password))
        .header("content-type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(body2));
    let inflight2 = std::thread::spawn(move || put.send().map(|r| r.status()));
    reached2_rx.recv_timeout(Duration::from_secs(60)).expect("the in-flight PUT sent its bytes");

    reg.kill9();
    let _ = release_tx.send(());
    let _ = release2_tx.send(());
    let r1 = inflight.join().unwrap();
    let r2 = inflight2.join().unwrap();
    assert!(r1.is_err() || !r1.as_ref().unwrap().is_success(), "PATCH in flight when killed: {r1:?}");
    assert!(r2.is_err() || !r2.as_ref().unwrap().is_success(), "PUT in flight when killed: {r2:?}");

    reg.start_again();
    // Everything committed before the kill is intact.
    reg.check_image("crash/a", "v1", &a);
    assert_eq!(reg.get(&format!("/v2/crash/b/blobs/{}", digest_of(&b.config))).bytes().unwrap()[..], b.config[..]);
    // Nothing half-written is visible as a blob.
    assert_eq!(reg.head(&format!("/v2/crash/b/blobs/{layer_d}")).status(), 404, "half-uploaded layer is visible");
    assert_eq!(reg.head(&format!("/v2/crash/b/blobs/{other_d}")).status(), 404, "half-PUT blob is visible");
    assert_eq!(reg.get("/v2/crash/b/manifests/v1").status(), 404);

    // The old session either is gone or resumes from what it says it holds; finishing it
    // must yield exactly the layer (the PUT checks the digest).
    let r = send(reg.req(Method::GET, &loc));
    eprintln!("after the restart the interrupted upload answers {} (Range {:?})", r.status(), header(&r, "range"));
    match r.status().as_u16() {
        404 => {}
        204 => {
            let range = header(&r, "range").unwrap_or_else(|| "0-0".into());
            let end: usize = range.split('-').nth(1).unwrap().parse().unwrap();
            let offset = if range == "0-0" { 0 } else { end + 1 };
            assert!(offset <= 10 << 20, "session claims {range}, more than was ever sent");
            let loc = reg.location(&r);
            let r = send(
                reg.req(Method::PUT, &with_query(&loc, &format!("digest={layer_d}")))
                    .header("content-type", "application/octet-stream")
                    .body(layer[offset..].to_vec()),
            );
            assert_eq!(r.status(), 201, "resuming the session from offset {offset} (it said {range})");
            assert_eq!(reg.get(&format!("/v2/crash/b/blobs/{layer_d}")).bytes().unwrap()[..], layer[..]);
        }
        s => panic!("status of the interrupted upload after restart: {s}"),
    }

    // B can be pushed again, whole.
    reg.push_image("crash/b", "v1", &b);
    reg.check_image("crash/b", "v1", &b);
    reg.check_image("crash/a", "v1", &a);
    let d = reg.push_blob("crash/b", &other);
    assert_eq!(d, other_d);
}

/// The first string value under `key` anywhere in a JSON document.
fn find_str(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(|x| x.as_str().map(str::to_string))
            .or_else(|| m.values().find_map(|x| find_str(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_str(x, key)),
        _ => None,
    }
}

/// Pack `sources` into a signed bundle, unpack it into a fresh registry root (installed
/// by unpack), serve the root, and pull every `(repository, tag, digest)` of `expected`
/// back with skopeo: same digests, and exactly these repositories and tags.
fn unpack_serve_and_pull(sources: &[String], prefix: Option<&str>, expected: &[(String, String, String)]) {
    let tmp = common::tempdir();
    let (bundle, public) = common::pack_sources(tmp.path(), sources);
    let root = tmp.path().join("root");
    let mut cmd = Command::new(common::airlift_path());
    cmd.arg("unpack").arg(&bundle).arg("--key").arg(&public).arg("--root").arg(&root);
    cmd.args(["--hostname", "localhost", "--json"]);
    if let Some(p) = prefix {
        cmd.args(["--prefix", p]);
    }
    let stdout = run_ok(&mut cmd);
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("unpack --json: {e}: {stdout}"));
    let url = find_str(&doc, "url").unwrap_or_else(|| panic!("unpack --root prints no registry URL: {doc}"));
    assert!(url.starts_with("https://localhost:"), "registry URL {url}");
    let user = find_str(&doc, "user").unwrap_or_else(|| panic!("unpack --root prints no user: {doc}"));
    let password = find_str(&doc, "password").unwrap_or_else(|| panic!("unpack --root prints no password: {doc}"));
    let ca = find_str(&doc, "ca_file").unwrap_or_else(|| panic!("unpack --root prints no CA path: {doc}"));

    let mut reg = Registry::adopt(&root, &user, &password, Path::new(&ca));
    reg.serve(&[]);
    let catalog: Value = serde_json::from_slice(&reg.get("/v2/_catalog").bytes().unwrap()).unwrap();
    let mut repos: Vec<String> =
        catalog["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    repos.sort();
    let mut want_repos: Vec<String> = expected.iter().map(|e| e.0.clone()).collect();
    want_repos.sort();
    want_repos.dedup();
    assert_eq!(repos, want_repos, "repositories after unpack");
    for repo in &repos {
        let t: Value = serde_json::from_slice(&reg.get(&format!("/v2/{repo}/tags/list")).bytes().unwrap()).unwrap();
        let mut tags: Vec<String> =
            t["tags"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        tags.sort();
        let mut want: Vec<String> = expected.iter().filter(|e| &e.0 == repo).map(|e| e.1.clone()).collect();
        want.sort();
        assert_eq!(tags, want, "tags of {repo} after unpack");
    }
    let out = common::tempdir();
    let dest = out.path().join("pulled");
    for (repo, tag, digest) in expected {
        let src = reg.docker_ref(&format!("{repo}:{tag}"));
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(&src);
        assert_eq!(skopeo_raw_digest(&mut cmd), *digest, "skopeo inspect --raw {src}");
        let mut cmd = reg.skopeo("copy");
        cmd.args(["--all", "--preserve-digests"]).args(reg.skopeo_src_args()).arg(&src);
        cmd.arg(format!("oci:{}:{tag}", dest.display()));
        run_ok(&mut cmd);
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw"]).arg(format!("oci:{}:{tag}", dest.display()));
        assert_eq!(skopeo_raw_digest(&mut cmd), *digest, "pulled {src}");
    }
    reg.stop();
}

#[test]
fn unpack_into_a_registry_root_then_serve_and_pull_every_image_with_skopeo() {
    if !common::have("skopeo") {
        return;
    }
    // `oci:DIR` lands in the repository named after DIR, tagged with each ref name.
    let source = vec![format!("oci:{}", common::testdata("layout").display())];
    let refs = testdata_refs();
    let expected: Vec<_> = refs.iter().map(|(r, d, _)| ("layout".to_string(), r.clone(), d.clone())).collect();
    unpack_serve_and_pull(&source, None, &expected);
    let expected: Vec<_> =
        refs.iter().map(|(r, d, _)| ("mirror/site/layout".to_string(), r.clone(), d.clone())).collect();
    unpack_serve_and_pull(&source, Some("mirror/site"), &expected);
}

#[test]
fn unpack_maps_full_reference_names_to_their_repository_path_under_the_prefix() {
    if !common::have("skopeo") {
        return;
    }
    // A layout whose ref names are full references, as a mirror of quay.io would have.
    let tmp = common::tempdir();
    let layout = tmp.path().join("ocp");
    let digests = common::make_layout(&layout, &[&[20_000, 3000], &[5000]], false);
    let names = ["quay.io/openshift/release:4.16.1", "registry.example.com:5000/team/tool:v2"];
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for (m, name) in index["manifests"].as_array_mut().unwrap().iter_mut().zip(names) {
        m["annotations"]["org.opencontainers.image.ref.name"] = Value::from(name);
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let expected = vec![
        ("mirror/openshift/release".to_string(), "4.16.1".to_string(), digests[0].clone()),
        ("mirror/team/tool".to_string(), "v2".to_string(), digests[1].clone()),
    ];
    // The whole layout: every image goes where its ref name says.
    unpack_serve_and_pull(&[format!("oci:{}", layout.display())], Some("mirror"), &expected);
}

/// `oci:DIR:REF` where REF is a full reference with its own `:` (a port, a tag): the
/// layout is the first prefix that is a layout directory, as skopeo reads `oci:` references.
#[test]
fn pack_takes_an_oci_ref_that_is_a_full_reference_with_colons() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let layout = tmp.path().join("ocp");
    let digests = common::make_layout(&layout, &[&[20_000, 3000], &[5000]], false);
    let names = ["quay.io/openshift/release:4.16.1", "registry.example.com:5000/team/tool:v2"];
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for (m, name) in index["manifests"].as_array_mut().unwrap().iter_mut().zip(names) {
        m["annotations"]["org.opencontainers.image.ref.name"] = Value::from(name);
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    // skopeo reads these references as the layout plus the full name.
    for name in names {
        run_ok(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:{name}", layout.display())));
    }
    let sources: Vec<String> = names.iter().map(|n| format!("oci:{}:{n}", layout.display())).collect();
    let expected = vec![
        ("mirror/openshift/release".to_string(), "4.16.1".to_string(), digests[0].clone()),
        ("mirror/team/tool".to_string(), "v2".to_string(), digests[1].clone()),
    ];
    unpack_serve_and_pull(&sources, Some("mirror"), &expected);
}

#[test]
fn sigterm_stops_the_server_promptly_with_idle_connections_and_within_the_grace_with_a_stalled_upload() {
    let mut reg = Registry::start();
    let img = Image::new(300, &[1000]);
    reg.push_image("term", "v1", &img);
    // Idle keep-alive connections (the shared client's pool, as podman leaves them).
    reg.check_image("term", "v1", &img);
    let started = Instant::now();
    reg.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "SIGTERM with idle connections took {took:?}");

    // A PATCH stuck mid-body: the server gives in-flight requests a grace period (30 s in
    // src/registry/server.rs), then exits; it must not hang past it.
    reg.start_again();
    let loc = reg.start_upload("term");
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let body = StallingBody {
        data: common::noise(301, 4 << 20),
        pos: 0,
        stall_at: 1 << 20,
        reached: Some(reached_tx),
        release: release_rx,
    };
    let patch = reg
        .new_client()
        .request(Method::PATCH, &loc)
        .basic_auth(&reg.user, Some(&reg.password))
        .header("content-type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(body));
    let stalled = std::thread::spawn(move || patch.send().map(|r| r.status()));
    reached_rx.recv_timeout(Duration::from_secs(60)).expect("the PATCH sent its first MiB");
    let started = Instant::now();
    reg.stop();
    let took = started.elapsed();
    let _ = release_tx.send(());
    let _ = stalled.join();
    eprintln!("SIGTERM to exit with a stalled upload: {took:?}");
    assert!(took < Duration::from_secs(20), "SIGTERM with a stalled upload took {took:?}");
    // It comes back with what was committed.
    reg.start_again();
    reg.check_image("term", "v1", &img);
}
