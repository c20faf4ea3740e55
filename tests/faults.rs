//! Faults injected for real: `airlift pack docker://…` through a loopback proxy
//! (tests/common/proxy.rs) that drops connections mid-blob, answers 500 and 429, stalls,
//! or holds the transfer while the test kills airlift with -9. Upstream is Debian's
//! `docker-registry` over plain HTTP with htpasswd auth; airlift reaches it with
//! `--tls-verify=false`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::proxy::{PlainDistribution, Policy, Proxy};
use crate::common::{airlift, airlift_path, keygen, testdata, testdata_digest};

/// The arguments of `airlift pack` through `proxy` into DIR/bundle, with DIR/cache
/// unless `cache` is given.
pub(crate) fn pack_args(dist: &PlainDistribution, proxy: &Proxy, dir: &Path, cache: &Path) -> Vec<std::ffi::OsString> {
    let key = dir.join("keys/site.key");
    if !key.exists() {
        keygen(&dir.join("keys"), "site");
    }
    let auth = dist.authfile(&dir.join("auth"), &proxy.host());
    let mut args: Vec<std::ffi::OsString> = vec!["pack".into(), "--no-installer".into(), "--json".into()];
    for (k, v) in [
        ("--key", key.as_os_str()),
        ("--out", dir.join("bundle").as_os_str()),
        ("--authfile", auth.as_os_str()),
        ("--cache", cache.as_os_str()),
    ] {
        args.push(k.into());
        args.push(v.to_owned());
    }
    args.push("--tls-verify=false".into());
    args.extend(["--volume-size", "64MiB", "--chunk-size", "4MiB"].map(Into::into));
    args
}

fn pack_ok(
    dist: &PlainDistribution,
    proxy: &Proxy,
    dir: &Path,
    sources: &[String],
    extra: &[&str],
) -> serde_json::Value {
    let started = Instant::now();
    let out = airlift()
        .args(pack_args(dist, proxy, dir, &dir.join("cache")))
        .args(extra)
        .args(sources)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let log = proxy.stats().log.lock().unwrap().join("\n");
    assert!(
        out.status.success(),
        "pack failed ({}) after {:?}\nstderr: {}\nproxy: {}\nproxy log:\n{log}\nregistry log:\n{}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        proxy.stats().summary(),
        dist.log()
    );
    eprintln!("pack took {:?}; proxy: {}", started.elapsed(), proxy.stats().summary());
    serde_json::from_slice(&out.stdout).expect("pack --json")
}

fn verify_ok(dir: &Path) {
    airlift().arg("verify").arg(dir.join("bundle")).arg("--key").arg(dir.join("keys/site.pub")).assert().code(0);
}

const REFS: [&str; 3] = ["multi", "app-00", "app-01"];

pub(crate) fn push_testdata(dist: &PlainDistribution) -> Vec<String> {
    let layout = testdata("layout");
    REFS.iter()
        .map(|r| {
            dist.push(&format!("oci:{}:{r}", layout.display()), &format!("ns/{r}:1"));
            format!("ns/{r}:1")
        })
        .collect()
}

fn assert_testdata_digests(doc: &serde_json::Value) {
    for (i, r) in REFS.iter().enumerate() {
        assert_eq!(doc["images"][i]["digest"], testdata_digest(r).as_str(), "{r}: {doc}");
    }
}

#[test]
fn pack_through_drops_500s_and_429s_resumes_with_range_and_keeps_every_digest() {
    let Some(dist) = PlainDistribution::start() else { return };
    let names = push_testdata(&dist);
    let proxy = Proxy::start(dist.port);
    proxy.set_policy(Policy { fail_every: 4, drop_every: 2, drop_after: 4096, ..Policy::default() });
    let tmp = crate::common::tempdir();
    let sources: Vec<String> = names.iter().map(|n| proxy.docker_ref(n)).collect();
    let doc = pack_ok(&dist, &proxy, tmp.path(), &sources, &[]);
    assert_testdata_digests(&doc);
    verify_ok(tmp.path());
    let s = proxy.stats();
    assert!(s.get(&s.drops) >= 2, "no drops were injected: {}", s.summary());
    assert!(s.get(&s.injected_500) >= 1 && s.get(&s.injected_429) >= 1, "{}", s.summary());
    assert!(
        s.get(&s.range_requests) >= 1,
        "the proxy saw no Range request after {} drops: {}\n{}",
        s.get(&s.drops),
        s.summary(),
        s.log.lock().unwrap().join("\n")
    );
    // airlift's own account: one retry per fault the proxy injected.
    let injected = s.get(&s.drops) + s.get(&s.injected_500) + s.get(&s.injected_429);
    assert_eq!(doc["fetch"]["retries"].as_u64(), Some(injected), "{}: {}", doc["fetch"], s.summary());
    // Every blob came across once in full, plus only the bytes of the cut-off tries
    // (a resumed blob is not fetched again from the start).
    let layout = testdata("layout");
    let per_blob = s.per_blob.lock().unwrap().clone();
    for (digest, (gets, bytes)) in &per_blob {
        let size = std::fs::metadata(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:")))
            .map(|m| m.len())
            .unwrap_or_else(|_| panic!("{digest} is not a testdata blob"));
        assert_eq!(*bytes, size, "{digest}: {gets} GET(s) sent {bytes} bytes for a blob of {size}");
    }
}

#[test]
fn a_stall_shorter_than_the_timeout_is_waited_out_without_retrying() {
    let Some(dist) = PlainDistribution::start() else { return };
    let names = push_testdata(&dist);
    let proxy = Proxy::start(dist.port);
    // Every 3rd request waits 4 s: blob bodies half way, other answers before their headers.
    proxy.set_policy(Policy { stall_every: 3, stall: Duration::from_secs(4), ..Policy::default() });
    let tmp = crate::common::tempdir();
    let sources: Vec<String> = names.iter().map(|n| proxy.docker_ref(n)).collect();
    let doc = pack_ok(&dist, &proxy, tmp.path(), &sources, &[]);
    assert_testdata_digests(&doc);
    verify_ok(tmp.path());
    let s = proxy.stats();
    assert!(s.get(&s.stalls) >= 2, "{}", s.summary());
    assert_eq!(s.get(&s.range_requests), 0, "a stall was taken for a drop: {}", s.summary());
    assert_eq!(doc["fetch"]["retries"].as_u64(), Some(0), "{}", doc["fetch"]);
    for (digest, (gets, _)) in s.per_blob.lock().unwrap().iter() {
        assert_eq!(*gets, 1, "{digest} fetched {gets} times across a stall");
    }
}

/// A stall longer than the read timeout (`--timeout`, 60 s by default; 5 s here so the
/// test takes seconds, not minutes) is a drop: the transfer resumes with `Range`.
#[test]
fn a_stall_longer_than_the_timeout_is_resumed_with_range() {
    let Some(dist) = PlainDistribution::start() else { return };
    let names = push_testdata(&dist);
    let proxy = Proxy::start(dist.port);
    proxy.set_policy(Policy { stall_every: 10, stall: Duration::from_secs(15), ..Policy::default() });
    let tmp = crate::common::tempdir();
    let sources: Vec<String> = names.iter().map(|n| proxy.docker_ref(n)).collect();
    let started = Instant::now();
    let doc = pack_ok(&dist, &proxy, tmp.path(), &sources, &["--timeout", "5"]);
    assert_testdata_digests(&doc);
    verify_ok(tmp.path());
    let s = proxy.stats();
    assert!(s.get(&s.stalls) >= 1, "{}", s.summary());
    assert!(s.get(&s.range_requests) >= 1, "{}\n{}", s.summary(), s.log.lock().unwrap().join("\n"));
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}

/// Blob digest → bytes kept in the cache's partial directory.
fn partial_sizes(cache: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(cache.join(".airlift/partial"))
        .map(|d| {
            d.flatten()
                .map(|e| (format!("sha256:{}", e.file_name().to_string_lossy()), e.metadata().unwrap().len()))
                .collect()
        })
        .unwrap_or_default()
}

/// A blob half on disk from an earlier run is resumed from where its bytes end; one
/// whose bytes on disk are wrong is fetched again whole, once.
#[test]
fn a_partly_fetched_blob_is_resumed_in_the_next_run() {
    let Some(dist) = PlainDistribution::start() else { return };
    let tmp = crate::common::tempdir();
    let src = tmp.path().join("src");
    crate::common::make_layout(&src, &[&[6usize << 20, 5 << 20]], false);
    dist.push(&format!("oci:{}:img-0", src.display()), "ns/part:1");
    let (_, blobs) = dist.image_blobs("ns/part:1");
    let mut layers: Vec<(&String, &u64)> = blobs.iter().filter(|(_, &size)| size > 1 << 20).collect();
    layers.sort_by_key(|(_, &size)| std::cmp::Reverse(size));
    let [(good, &good_size), (bad, &bad_size)] = layers[..] else { panic!("two layers expected: {blobs:?}") };
    let proxy = Proxy::start(dist.port);
    let sources = vec![proxy.docker_ref("ns/part:1")];

    // A first pack fills the cache; then the two layers are made partial: the first
    // 4 MiB of one, 4 MiB of garbage for the other.
    let work = tmp.path().join("run");
    pack_ok(&dist, &proxy, &work, &sources, &[]);
    let cache = work.join("cache");
    let kept = 4u64 << 20;
    std::fs::create_dir_all(cache.join(".airlift/partial")).unwrap();
    for (d, garbage) in [(good, false), (bad, true)] {
        let hex = d.trim_start_matches("sha256:");
        let full = cache.join("blobs/sha256").join(hex);
        let mut bytes = std::fs::read(&full).unwrap();
        bytes.truncate(kept as usize);
        if garbage {
            bytes.iter_mut().for_each(|b| *b ^= 0x5a);
        }
        std::fs::write(cache.join(".airlift/partial").join(hex), bytes).unwrap();
        std::fs::remove_file(full).unwrap();
    }

    let s = proxy.stats();
    s.reset();
    std::fs::remove_dir_all(work.join("bundle")).unwrap();
    let doc = pack_ok(&dist, &proxy, &work, &sources, &[]);
    let per_blob = s.per_blob.lock().unwrap().clone();
    let log = s.log.lock().unwrap().join("\n");
    // The good one: one GET for the rest.
    assert_eq!(per_blob.get(good.as_str()), Some(&(1, good_size - kept)), "{log}");
    // The bad one: the rest, then (the digest being wrong) the whole blob again.
    assert_eq!(per_blob.get(bad.as_str()), Some(&(2, bad_size - kept + bad_size)), "{log}");
    assert_eq!(per_blob.len(), 2, "only the two layers are fetched: {per_blob:?}");
    assert_eq!(doc["fetch"]["fetched"].as_u64(), Some(2), "{}", doc["fetch"]);
    assert!(partial_sizes(&cache).is_empty(), "partials left: {:?}", partial_sizes(&cache));
    verify_ok(&work);
}

#[test]
fn pack_killed_mid_fetch_and_rerun_fetches_only_what_the_cache_misses() {
    let Some(dist) = PlainDistribution::start() else { return };
    let tmp = crate::common::tempdir();
    let src = tmp.path().join("src");
    // Two images of five 3 MiB layers each: 30 MiB of layers, nothing shared.
    let layers = [3usize << 20; 5];
    crate::common::make_layout(&src, &[&layers, &layers], false);
    for i in 0..2 {
        dist.push(&format!("oci:{}:img-{i}", src.display()), &format!("ns/big{i}:1"));
    }
    // skopeo compresses the (noise, not really gzip) layers on the way: the truth is what
    // the registry holds.
    let mut all = BTreeMap::new();
    let mut manifests = Vec::new();
    for i in 0..2 {
        let (digest, blobs) = dist.image_blobs(&format!("ns/big{i}:1"));
        manifests.push(digest);
        all.extend(blobs);
    }
    let total: u64 = all.values().sum();
    let proxy = Proxy::start(dist.port);
    // Hold every blob body once 60% of the bytes went through: airlift is then killed
    // with some blobs in its cache, some partly received, some not started.
    let hold_at = total * 6 / 10;
    proxy.set_policy(Policy { hold_after_bytes: Some(hold_at), ..Policy::default() });
    let work = tmp.path().join("run");
    let cache = work.join("cache");
    let sources: Vec<String> = (0..2).map(|i| proxy.docker_ref(&format!("ns/big{i}:1"))).collect();
    let mut child = std::process::Command::new(airlift_path())
        .args(pack_args(&dist, &proxy, &work, &cache))
        .args(&sources)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let s = proxy.stats();
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.get(&s.held) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("pack ended ({status}) before the hold: {err}\n{}", s.summary());
        }
        assert!(Instant::now() < deadline, "the transfer never reached the hold: {}", s.summary());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let whatever airlift had fully received be committed, then kill it.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    let first_bytes = s.get(&s.blob_bytes);
    proxy.set_policy(Policy::default());

    // What the kill left: committed blobs in the cache, everything else missing.
    let cached: BTreeSet<String> = std::fs::read_dir(cache.join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| format!("sha256:{}", e.file_name().to_string_lossy())).collect())
        .unwrap_or_default();
    for c in &cached {
        let size = std::fs::metadata(cache.join("blobs/sha256").join(c.trim_start_matches("sha256:"))).map(|m| m.len());
        assert!(all.contains_key(c), "unknown blob {c} ({size:?} bytes) in the cache; source blobs: {all:?}");
    }
    let missing: BTreeMap<String, u64> =
        all.iter().filter(|(d, _)| !cached.contains(*d)).map(|(d, s)| (d.clone(), *s)).collect();
    let missing_bytes: u64 = missing.values().sum();
    eprintln!(
        "killed after {first_bytes} of {total} blob bytes: {} blob(s) cached, {} missing ({missing_bytes} bytes)",
        cached.len(),
        missing.len()
    );
    for m in &manifests {
        assert!(cached.contains(m), "manifest {m} is resolved before any layer, yet not in the cache");
    }
    assert!(!cached.is_empty(), "nothing was in the cache after {first_bytes} bytes");
    assert!(!missing.is_empty(), "the kill came too late");

    // Blobs cut off by the kill left their bytes on disk (in whole 2 MiB steps): the
    // rerun resumes those with a Range request.
    let partial = partial_sizes(&cache);
    for (d, len) in &partial {
        assert!(missing.get(d).is_some_and(|size| len < size), "partial {d} of {len} bytes: {missing:?}");
    }
    eprintln!("partly fetched before the kill: {partial:?}");

    s.reset();
    let doc = pack_ok(&dist, &proxy, &work, &sources, &[]);
    let fetched_bytes = s.get(&s.blob_bytes);
    let fetched: BTreeSet<String> = s.per_blob.lock().unwrap().keys().cloned().collect();
    // The rerun fetched exactly the bytes the cache lacked and nothing else.
    assert_eq!(
        fetched,
        missing.keys().cloned().collect::<BTreeSet<_>>(),
        "rerun fetched other blobs than the missing ones"
    );
    let per_blob = s.per_blob.lock().unwrap().clone();
    for (d, (gets, bytes)) in &per_blob {
        let left = missing[d] - partial.get(d).copied().unwrap_or(0);
        assert_eq!(
            (*gets, *bytes),
            (1, left),
            "{d}: rerun sent {bytes} bytes in {gets} GET(s) for a blob of {} with {left} bytes missing\nproxy log:\n{}",
            missing[d],
            s.log.lock().unwrap().join("\n")
        );
    }
    let partial_bytes: u64 = partial.values().sum();
    assert_eq!(fetched_bytes, missing_bytes - partial_bytes);
    assert_eq!(s.get(&s.range_requests), partial.values().filter(|&&l| l > 0).count() as u64);
    assert_eq!(doc["fetch"]["fetched"].as_u64(), Some(missing.len() as u64), "{}", doc["fetch"]);
    assert_eq!(doc["fetch"]["cached"].as_u64(), Some(cached.len() as u64), "{}", doc["fetch"]);
    verify_ok(&work);
    for (i, m) in manifests.iter().enumerate() {
        assert_eq!(doc["images"][i]["digest"], m.as_str());
    }
}
