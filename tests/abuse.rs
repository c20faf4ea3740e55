//! The embedded registry (`airlift serve`) under hostile or broken clients (issue 9,
//! defects 12, 17 and the tagging leftovers of 18): inverted ranges, early answers while a
//! body is still being sent, the request log, idle connection floods, password guessing,
//! the user-enumeration timing oracle, slow bodies, abandoned uploads, a full disk, stale
//! temp files. Each abuse test prints the pull latency of a normal client before and
//! while the abuse runs (`eprintln!`, visible with `--nocapture`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::registry::{digest_of, send, Image, Registry};
use crate::common::{airlift, make_layout, pack_sources, tempdir};

/// A pull by a client that has never connected before: a fresh TLS connection, the
/// manifest and every blob. Returns how long it took.
fn pull_latency(reg: &Registry, repo: &str, image: &Image) -> Duration {
    let client = reg.new_client();
    let start = Instant::now();
    let get = |path: String| {
        let r = client
            .get(reg.url(&path))
            .basic_auth(&reg.user, Some(&reg.password))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        assert_eq!(r.status(), 200, "GET {path}");
        r.bytes().unwrap()
    };
    let manifest = get(format!("/v2/{repo}/manifests/latest"));
    assert_eq!(&manifest[..], &image.manifest[..]);
    for blob in image.blobs() {
        let got = get(format!("/v2/{repo}/blobs/{}", digest_of(blob)));
        assert_eq!(got.len(), blob.len());
    }
    start.elapsed()
}

/// The median of a few pull latencies.
fn median_pull(reg: &Registry, repo: &str, image: &Image, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n).map(|_| pull_latency(reg, repo, image)).collect();
    times.sort();
    times[n / 2]
}

/// A pull is "bounded" when it takes less than 2 s or 10× the idle latency.
fn bounded(idle: Duration) -> Duration {
    (idle * 10).max(Duration::from_secs(2))
}

fn ca_pem(reg: &Registry) -> Vec<u8> {
    std::fs::read(&reg.ca_file).unwrap()
}

fn tls_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS stream to the registry (handshake done).
fn tls(reg: &Registry) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_config(&ca_pem(reg)), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", reg.port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// A client that sends its requests from `ip` (a loopback address).
fn client_from(reg: &Registry, ip: Ipv4Addr) -> reqwest::blocking::Client {
    let ca = reqwest::Certificate::from_pem(&ca_pem(reg)).unwrap();
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], reg.port)))
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Every line of a JSON-lines log, parsed (a line that is not JSON fails the test).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}

// ---- defect 12 -------------------------------------------------------------------------

#[test]
fn inverted_range_answers_416_with_the_blob_size() {
    let reg = Registry::start();
    let blob = crate::common::noise(12, 1000);
    let digest = reg.push_blob("range/app", &blob);
    for range in ["bytes=500-0", "bytes=1000-", "bytes=2000-3000"] {
        let r = send(reg.req(Method::GET, &format!("/v2/range/app/blobs/{digest}")).header("Range", range));
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(r.headers().get("content-range").and_then(|v| v.to_str().ok()), Some("bytes */1000"), "{range}");
    }
    let r = send(reg.req(Method::GET, &format!("/v2/range/app/blobs/{digest}")).header("Range", "bytes=10-19"));
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().unwrap()[..], &blob[10..20]);
}

/// A registry that answers before reading the body (401 without credentials, 416 for a
/// chunk out of order) must still let the client read that answer: the client sees the
/// status, not a reset or "EOF in violation of protocol".
#[test]
fn an_early_answer_during_a_large_body_reaches_the_client() {
    let reg = Registry::start();
    let body = vec![7u8; 64 << 20];
    let digest = digest_of(&body);
    for round in 0..3 {
        let r = reg
            .new_client()
            .put(reg.url(&format!("/v2/early/app/blobs/uploads/?digest={digest}")))
            .body(body.clone())
            .send();
        match r {
            Ok(r) => assert_eq!(r.status(), 401, "round {round}"),
            Err(e) => panic!("round {round}: unauthenticated 64 MiB PUT: the client saw no status: {e:#}"),
        }
        // A client that streams its body (as `unpack --to` does) reads the answer only
        // after the whole body went out.
        let streamed = reqwest::blocking::Body::sized(std::io::Cursor::new(body.clone()), body.len() as u64);
        let r = reg
            .new_client()
            .put(reg.url(&format!("/v2/early/app/blobs/uploads/?digest={digest}")))
            .body(streamed)
            .send();
        match r {
            Ok(r) => assert_eq!(r.status(), 401, "round {round}"),
            Err(e) => panic!("round {round}: streamed unauthenticated 64 MiB PUT: the client saw no status: {e:#}"),
        }
        let session = reg.start_upload("early/app");
        let r = reg
            .new_client()
            .patch(&session)
            .basic_auth(&reg.user, Some(&reg.password))
            .header("Content-Range", format!("1000-{}", 1000 + body.len() - 1))
            .body(body.clone())
            .send();
        match r {
            Ok(r) => assert_eq!(r.status(), 416, "round {round}"),
            Err(e) => panic!("round {round}: out-of-order 64 MiB PATCH: the client saw no status: {e:#}"),
        }
    }
}

#[test]
fn every_request_and_failed_login_is_logged_as_json_without_passwords() {
    let mut reg = Registry::install();
    let log_dir = tempdir();
    let log = log_dir.path().join("requests.log");
    reg.serve(&["--log", log.to_str().unwrap()]);
    let image = Image::new(3, &[2000]);
    reg.push_image("logged/app", "latest", &image);
    pull_latency(&reg, "logged/app", &image);
    let wrong = "not-the-password-4711";
    let r = send(reg.anon(Method::GET, "/v2/logged/app/manifests/latest").basic_auth(&reg.user, Some(wrong)));
    assert_eq!(r.status(), 401);
    let r = send(reg.anon(Method::GET, "/v2/").basic_auth("nobody", Some(wrong)));
    assert_eq!(r.status(), 401);
    reg.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let lines = json_lines(&text);
    // The server's own events are in the same stream, as JSON.
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "listening" && l["address"].as_str().is_some_and(|a| a.starts_with("https://"))),
        "{text}"
    );
    let requests: Vec<&Value> = lines.iter().filter(|l| l["event"] == "request").collect();
    let layer = format!("/v2/logged/app/blobs/{}", digest_of(&image.layers[0]));
    let blob_get = requests
        .iter()
        .find(|l| l["method"] == "GET" && l["path"] == layer.as_str())
        .unwrap_or_else(|| panic!("no GET {layer} logged:\n{text}"));
    assert_eq!(blob_get["status"], 200);
    assert_eq!(blob_get["user"], reg.user.as_str());
    assert_eq!(blob_get["bytes"], 2000);
    assert!(blob_get["duration_ms"].is_number(), "{blob_get}");
    assert!(blob_get["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1")), "{blob_get}");
    assert!(blob_get["time"].is_string(), "{blob_get}");
    assert!(
        requests.iter().any(|l| l["method"] == "PUT" && l["status"] == 201),
        "the manifest PUT is not logged:\n{text}"
    );
    let failed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "login_failed").collect();
    assert!(failed.iter().any(|l| l["user"] == reg.user.as_str()), "no failed login for {}:\n{text}", reg.user);
    assert!(failed.iter().any(|l| l["user"] == "nobody"), "no failed login for an unknown user:\n{text}");
    assert!(requests.iter().any(|l| l["status"] == 401), "401 answers are not logged:\n{text}");
    let all = format!("{text}{}", reg.log());
    for secret in [wrong, reg.password.as_str(), "Basic "] {
        assert!(!all.contains(secret), "the log holds {secret:?}:\n{text}");
    }
}

#[test]
fn the_request_log_goes_to_stderr_by_default() {
    let reg = Registry::start();
    send(reg.req(Method::GET, "/v2/"));
    let r = send(reg.anon(Method::GET, "/v2/").basic_auth(&reg.user, Some("wrong-password")));
    assert_eq!(r.status(), 401);
    let log = reg.log();
    let json: Vec<Value> = json_lines(&log.lines().filter(|l| l.starts_with('{')).collect::<Vec<_>>().join("\n"));
    assert!(json.iter().any(|l| l["event"] == "request" && l["path"] == "/v2/" && l["status"] == 200), "{log}");
    assert!(json.iter().any(|l| l["event"] == "login_failed"), "{log}");
    assert!(!log.contains("wrong-password") && !log.contains(&reg.password), "{log}");
}

// ---- defect 17 -------------------------------------------------------------------------

/// 1,100 idle connections (half bare TCP, half after a TLS handshake) from 127.0.0.2–.251
/// do not stall a normal client's pull.
#[test]
fn idle_connection_flood_does_not_stall_pulls() {
    let reg = Registry::start();
    let image = Image::new(17, &[64 << 10]);
    reg.push_image("flood/app", "latest", &image);
    let idle = median_pull(&reg, "flood/app", &image, 3);
    eprintln!("idle connections: pull latency before: {idle:?}");
    let config = tls_config(&ca_pem(&reg));
    let port = reg.port;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for i in 0..1100u32 {
        let (config, opened, mut stop) = (Arc::clone(&config), Arc::clone(&opened), stop_rx.clone());
        runtime.spawn(async move {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8);
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else { return };
            if socket.bind(SocketAddr::from((ip, 0))).is_err() {
                return;
            }
            let connect = socket.connect(SocketAddr::from(([127, 0, 0, 1], port)));
            let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(20), connect).await else { return };
            opened.fetch_add(1, Ordering::Relaxed);
            // Hold the connection (and, for odd ones, a finished TLS handshake) open.
            let _hold = if i % 2 == 1 {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let c = tokio_rustls::TlsConnector::from(config);
                tokio::time::timeout(Duration::from_secs(20), c.connect(name, tcp))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .map(|s| Box::new(s) as Box<dyn Send>)
            } else {
                Some(Box::new(tcp) as Box<dyn Send>)
            };
            let _ = stop.wait_for(|s| *s).await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::Relaxed) < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("idle connections: {} opened", opened.load(Ordering::Relaxed));
    let mut during = Vec::new();
    for _ in 0..3 {
        during.push(pull_latency(&reg, "flood/app", &image));
    }
    eprintln!("idle connections: pull latency during 1,100 idle connections: {during:?}");
    let _ = stop_tx.send(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
    let worst = during.iter().max().copied().unwrap();
    assert!(worst < bounded(idle), "a pull took {worst:?} during the flood (idle: {idle:?})");
}

/// 1,000 wrong passwords, 16 at a time, from 127.0.0.2: later ones get 429 with
/// Retry-After, they are logged, and a normal client's pulls stay fast.
#[test]
fn password_guessing_is_rate_limited_logged_and_does_not_slow_pulls() {
    let reg = Registry::start();
    let image = Image::new(18, &[64 << 10]);
    reg.push_image("guess/app", "latest", &image);
    let idle = median_pull(&reg, "guess/app", &image, 3);
    eprintln!("password guessing: pull latency before: {idle:?}");
    let attempts = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let retry_after = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..16 {
        let client = client_from(&reg, Ipv4Addr::new(127, 0, 0, 2));
        let (url, user) = (reg.url("/v2/guess/app/manifests/latest"), reg.user.clone());
        let (attempts, limited, retry_after) = (Arc::clone(&attempts), Arc::clone(&limited), Arc::clone(&retry_after));
        workers.push(std::thread::spawn(move || loop {
            let n = attempts.fetch_add(1, Ordering::Relaxed);
            if n >= 1000 {
                return;
            }
            let r = client.get(&url).basic_auth(&user, Some(format!("guess-{w}-{n}"))).send().unwrap();
            match r.status().as_u16() {
                401 => {}
                429 => {
                    limited.fetch_add(1, Ordering::Relaxed);
                    if r.headers().get("retry-after").is_some() {
                        retry_after.fetch_add(1, Ordering::Relaxed);
                    }
                }
                s => panic!("a wrong password answered {s}"),
            }
        }));
    }
    let mut during = Vec::new();
    while attempts.load(Ordering::Relaxed) < 1000 {
        during.push(pull_latency(&reg, "guess/app", &image));
    }
    for w in workers {
        w.join().unwrap();
    }
    let (limited, retry_after) = (limited.load(Ordering::Relaxed), retry_after.load(Ordering::Relaxed));
    eprintln!("password guessing: pull latency during 1,000 wrong passwords: {during:?}; {limited} answered 429");
    assert!(limited > 900, "only {limited} of 1,000 wrong passwords were answered 429");
    assert_eq!(retry_after, limited, "a 429 without Retry-After");
    let worst = during.iter().max().copied().unwrap_or_default();
    assert!(worst < bounded(idle), "a pull took {worst:?} during the guessing (idle: {idle:?})");
    let log = reg.log();
    let failed = log.lines().filter(|l| l.contains("\"login_failed\"") && l.contains("127.0.0.2")).count();
    assert!(failed >= 10, "{failed} failed logins logged");
    assert!(log.lines().any(|l| l.contains("\"status\":429")), "429 answers not logged");
}

/// A failed login takes as long for an unknown user as for a known one (bcrypt against a
/// dummy hash of the same cost): medians within 30%.
#[test]
fn unknown_and_known_users_fail_in_the_same_time() {
    let mut reg = Registry::install();
    // Rate limiting would answer later attempts early: out of the way for this test.
    reg.serve(&["--login-burst", "1000"]);
    let reg = reg;
    let client = reg.new_client();
    let once = |user: &str, i: usize| {
        let start = Instant::now();
        let r = client.get(reg.url("/v2/")).basic_auth(user, Some(format!("wrong-{i}"))).send().unwrap();
        assert_eq!(r.status(), 401);
        start.elapsed()
    };
    // Interleaved, one of each at a time, so that load on a shared machine weighs on both
    // alike.
    let known_user = reg.user.clone();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..21 {
        known.push(once(&known_user, i));
        unknown.push(once("no-such-user", i));
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    eprintln!("failed login: known user median {k:?}, unknown user median {u:?}");
    let ratio = k.as_secs_f64() / u.as_secs_f64();
    assert!((1.0 / 1.3..1.3).contains(&ratio), "known {k:?} vs unknown {u:?}: a user-enumeration oracle");
}

/// An authenticated upload trickling at 1 byte/s is cut within the configured window,
/// and its session stays resumable.
#[test]
fn a_trickling_upload_body_is_cut_and_its_session_kept() {
    let mut reg = Registry::install();
    reg.serve(&["--body-min-rate", "100", "--body-window", "2"]);
    let session = reg.start_upload("slow/app");
    let path = session.trim_start_matches(&format!("https://localhost:{}", reg.port)).to_string();
    let mut s = tls(&reg);
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1000\r\n\r\n",
        reg.port,
        reg.basic()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    let start = Instant::now();
    let mut cut = None;
    while start.elapsed() < Duration::from_secs(20) {
        if s.write_all(b"x").and_then(|_| s.flush()).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        // Anything the server answered (or its close) ends the trickle.
        s.sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(_) => {
                cut = Some(start.elapsed());
                break;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                cut = Some(start.elapsed());
                break;
            }
        }
    }
    eprintln!("trickling upload: cut after {cut:?} (window 2 s, minimum 100 bytes/s)");
    let cut = cut.expect("a 1 byte/s upload body ran for 20 s without being cut");
    assert!(cut < Duration::from_secs(8), "cut only after {cut:?}");
    let r = send(reg.req(Method::GET, &session));
    assert_eq!(r.status(), 204, "the session is gone after a slow body");
    // The session resumes: the blob can still be completed.
    let blob = crate::common::noise(4, 5000);
    let r = reg
        .new_client()
        .put(format!("{session}{}digest={}", if session.contains('?') { '&' } else { '?' }, digest_of(&blob)))
        .basic_auth(&reg.user, Some(&reg.password))
        .header("Content-Range", format!("0-{}", blob.len() - 1))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
}

/// Abandoned upload sessions are capped per repository and in total.
#[test]
fn abandoned_upload_sessions_are_capped() {
    let mut reg = Registry::install();
    reg.serve(&["--max-uploads-per-repo", "5", "--max-uploads", "8"]);
    let post = |repo: &str| send(reg.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")));
    let mut sessions = Vec::new();
    for i in 0..5 {
        let r = post("cap/a");
        assert_eq!(r.status(), 202, "session {i} of cap/a");
        sessions.push(reg.location(&r));
    }
    let r = post("cap/a");
    assert_eq!(r.status(), 429, "a sixth session of cap/a");
    let body = r.text().unwrap();
    assert!(body.contains("TOOMANYREQUESTS") && body.contains("upload sessions"), "{body}");
    for i in 0..3 {
        assert_eq!(post("cap/b").status(), 202, "session {i} of cap/b");
    }
    let r = post("cap/b");
    assert_eq!(r.status(), 429, "a ninth session in total");
    // A cancelled session frees its place.
    assert_eq!(reg.delete(&sessions[0]).status(), 204);
    let blob = crate::common::noise(5, 100);
    let digest = reg.push_blob("cap/c", &blob);
    assert!(digest.starts_with("sha256:"));
}

// ---- full disk -------------------------------------------------------------------------

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        assert!(status.is_ok_and(|s| s.success()) || std::thread::panicking(), "umount {}", self.0.display());
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "CI=true: the disk-full test needs root (mount -t tmpfs)");
        eprintln!("SKIPPED: the disk-full test needs root to mount a tmpfs");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(out.status.success(), "mount tmpfs on {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    Some(Mount(dir.to_path_buf()))
}

#[test]
fn a_full_disk_answers_507_and_unpack_to_names_it() {
    let mut reg = Registry::install();
    let Some(_mount) = mount_tmpfs(&reg.storage(), "8m") else { return };
    reg.serve(&[]);
    let blob = crate::common::noise(6, 12 << 20);
    let r = reg
        .new_client()
        .post(reg.url(&format!("/v2/full/app/blobs/uploads/?digest={}", digest_of(&blob))))
        .basic_auth(&reg.user, Some(&reg.password))
        .body(blob)
        .send()
        .expect("the client sees the answer");
    assert_eq!(r.status(), 507);
    let body = r.text().unwrap();
    assert!(body.contains("no space left on device"), "{body}");
    assert!(reg.log().to_lowercase().contains("no space left"), "not logged:\n{}", reg.log());

    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    make_layout(&layout, &[&[12 << 20]], false);
    let (bundle, public) = pack_sources(tmp.path(), &[format!("oci:{}", layout.display())]);
    let authfile = crate::common::distribution::write_authfile(&tmp.path().join("auth"), &reg.host(), &reg.creds());
    let out = airlift()
        .arg("unpack")
        .arg(&bundle)
        .arg("--key")
        .arg(&public)
        .args(["--to", &format!("docker://{}/full", reg.host())])
        .arg("--authfile")
        .arg(&authfile)
        .arg("--cert-dir")
        .arg(&reg.cert_dir)
        .arg("--cache")
        .arg(tmp.path().join("staging"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("registry {} refused the upload: no space left on device (507)", reg.host())),
        "{stderr}"
    );
    assert!(!stderr.contains("receiver is gone"), "{stderr}");
    reg.stop();
}

// ---- defect 18 (first item) ------------------------------------------------------------

#[test]
fn stale_temp_files_in_tags_are_purged_at_start_and_fresh_ones_kept() {
    let mut reg = Registry::start();
    let image = Image::new(19, &[100]);
    reg.push_image("tmp/app", "latest", &image);
    reg.stop();
    let tags = reg.storage().join("repositories/tmp/app/_manifests/tags");
    let stale = tags.join(".airlift-tmp-stale1");
    let fresh = tags.join(".airlift-tmp-fresh1");
    std::fs::write(&stale, "sha256:").unwrap();
    std::fs::write(&fresh, "sha256:").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
    reg.start_again();
    assert!(!stale.exists(), "a stale temp file is left in tags/");
    assert!(fresh.exists(), "a fresh temp file (a writer may still be at work) was deleted");
    let r = send(reg.req(Method::GET, "/v2/tmp/app/tags/list"));
    let tags: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["latest"]));
}
