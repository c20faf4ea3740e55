//! A fault-injecting HTTP/1.1 proxy on loopback, in front of a plain-HTTP
//! `docker-registry` (CNCF distribution, htpasswd auth) started here too.
//!
//! One request per connection (`Connection: close` both ways). Per the [`Policy`] the test
//! sets, the proxy answers 500 or 429 (`Retry-After: 1`) instead of forwarding, drops the
//! connection part way through a blob body, stalls a response, or holds every blob body
//! once enough blob bytes went through (so a test can kill the client mid-fetch), or
//! flips a byte of a blob body (wrong content). It counts requests, blob GETs, Range requests and the blob body bytes it forwarded.

use crate::common::distribution::RegistryProcess;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::registry::free_port;
use super::{have, run_ok};

/// What the proxy does wrong. Counters are 1-based; 0 turns a fault off.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Every k-th request is answered by the proxy itself: 500, then 429 with
    /// `Retry-After: 1`, alternately.
    pub fail_every: u64,
    /// Every k-th blob GET whose body is longer than `drop_after` is cut after
    /// `drop_after` body bytes (connection shut down).
    pub drop_every: u64,
    pub drop_after: u64,
    /// Every k-th request is held for `stall` before continuing: a blob GET in the middle
    /// of its body (after half of it), any other request before its response headers.
    pub stall_every: u64,
    pub stall: Duration,
    /// Once this many blob body bytes went through, every blob body waits (forever,
    /// until the policy changes) before its next bytes.
    pub hold_after_bytes: Option<u64>,
    /// Every k-th whole blob body (a 200 answer, not a range) reaches the client with one
    /// byte flipped, the one in its middle: the registry (or the path) sends wrong content.
    pub corrupt_every: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Requests parsed (whatever the answer).
    pub requests: AtomicU64,
    /// Connections that did not start with an HTTP request (a TLS hello, say).
    pub junk: AtomicU64,
    pub blob_gets: AtomicU64,
    pub range_requests: AtomicU64,
    /// Answers made up by the proxy.
    pub injected_500: AtomicU64,
    pub injected_429: AtomicU64,
    pub drops: AtomicU64,
    pub stalls: AtomicU64,
    /// Blob body bytes written to the client.
    pub blob_bytes: AtomicU64,
    /// Blob bodies currently waiting in a hold.
    pub held: AtomicU64,
    /// Blob bodies sent with a flipped byte.
    pub corrupted: AtomicU64,
    /// Per blob digest: (GETs, body bytes written to the client).
    pub per_blob: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Every request line, in order, with the status sent back (or what happened).
    pub log: Mutex<Vec<String>>,
}

impl Stats {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.junk,
            &self.blob_gets,
            &self.range_requests,
            &self.injected_500,
            &self.injected_429,
            &self.drops,
            &self.stalls,
            &self.blob_bytes,
            &self.corrupted,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        self.per_blob.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
    }

    pub fn summary(&self) -> String {
        format!(
            "requests {} (junk {}), blob GETs {}, Range {}, injected 500 {} / 429 {}, drops {}, stalls {}, blob bytes {}, \
             corrupted {}",
            self.get(&self.requests),
            self.get(&self.junk),
            self.get(&self.blob_gets),
            self.get(&self.range_requests),
            self.get(&self.injected_500),
            self.get(&self.injected_429),
            self.get(&self.drops),
            self.get(&self.stalls),
            self.get(&self.blob_bytes),
            self.get(&self.corrupted),
        )
    }
}

struct State {
    upstream: u16,
    policy: Mutex<Policy>,
    stats: Stats,
    stop: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            policy: Mutex::new(Policy::default()),
            stats: Stats::default(),
            stop: AtomicBool::new(false),
        });
        let s = state.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(&s, conn);
                });
            }
        });
        Proxy { port, state, accept: Some(accept) }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host())
    }

    pub fn set_policy(&self, p: Policy) {
        *self.state.policy.lock().unwrap() = p;
    }

    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.set_policy(Policy::default());
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take(64 << 10).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        let Ok(text) = String::from_utf8(line) else { return Ok(None) };
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(text);
        if lines.len() > 200 {
            return Ok(None);
        }
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head with hop-by-hop connection headers replaced by `Connection: close`.
fn rewrite(lines: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if i > 0 && matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn handle(s: &State, client: TcpStream) -> std::io::Result<()> {
    let stats = &s.stats;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let Some(req) = read_head(&mut reader)? else {
        stats.junk.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    };
    let parts: Vec<&str> = req.first().map(|l| l.split(' ').collect()).unwrap_or_default();
    if parts.len() != 3 || !parts[2].starts_with("HTTP/1.") {
        stats.junk.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    let (method, path) = (parts[0].to_string(), parts[1].to_string());
    let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let blob = (method == "GET")
        .then(|| path.split_once("/blobs/").map(|(_, d)| d.split('?').next().unwrap_or("").to_string()))
        .flatten()
        .filter(|d| d.starts_with("sha256:"));
    let blob_n = if blob.is_some() { stats.blob_gets.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
    let range = header(&req, "range").map(str::to_string);
    if range.is_some() {
        stats.range_requests.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(d) = &blob {
        stats.per_blob.lock().unwrap().entry(d.clone()).or_default().0 += 1;
    }
    let policy = s.policy.lock().unwrap().clone();
    let note = |what: String| {
        stats.log.lock().unwrap().push(format!(
            "{n} {method} {path} {}-> {what}",
            range.as_deref().map(|r| format!("[{r}] ")).unwrap_or_default()
        ))
    };

    // A made-up error instead of forwarding.
    if policy.fail_every > 0 && n % policy.fail_every == 0 {
        let which = (n / policy.fail_every) % 2;
        let head = if which == 1 {
            stats.injected_500.fetch_add(1, Ordering::SeqCst);
            note("injected 500".into());
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else {
            stats.injected_429.fetch_add(1, Ordering::SeqCst);
            note("injected 429".into());
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        };
        client.write_all(head.as_bytes())?;
        client.flush()?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }

    // Forward the request.
    let mut up = TcpStream::connect(("127.0.0.1", s.upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(&rewrite(&req))?;
    if let Some(len) = header(&req, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        std::io::copy(&mut reader.by_ref().take(len), &mut up)?;
    }
    up.flush()?;
    let mut upr = BufReader::new(up);
    let Some(resp) = read_head(&mut upr)? else {
        note("upstream sent nothing".into());
        return Ok(());
    };
    let status: u16 = resp.first().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body_len = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok());
    let no_body = method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let stall = policy.stall_every > 0 && n % policy.stall_every == 0 && !policy.stall.is_zero();
    let blob_body = blob.is_some() && (status == 200 || status == 206);
    if stall && !(blob_body && body_len.is_some_and(|l| l > 1)) {
        stats.stalls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(policy.stall);
    }
    client.write_all(&rewrite(&resp))?;
    if no_body {
        note(format!("{status}"));
        return Ok(());
    }
    let drop_at = (blob_body
        && policy.drop_every > 0
        && blob_n % policy.drop_every == 0
        && body_len.is_some_and(|l| l > policy.drop_after))
    .then_some(policy.drop_after);
    let stall_at = (stall && blob_body).then(|| body_len.unwrap_or(0) / 2);
    let corrupt_at = (status == 200
        && blob.is_some()
        && policy.corrupt_every > 0
        && blob_n % policy.corrupt_every == 0
        && body_len.is_some_and(|l| l > 0))
    .then(|| body_len.unwrap_or(0) / 2);
    if corrupt_at.is_some() {
        stats.corrupted.fetch_add(1, Ordering::SeqCst);
    }
    let limit = body_len.unwrap_or(u64::MAX);
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 16 << 10];
    let mut stalled = false;
    while sent < limit {
        if blob_body && hold(s, &policy) {
            note(format!("{status}, held after {sent} body bytes, then closed"));
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut want = (limit - sent).min(buf.len() as u64);
        if let Some(d) = drop_at {
            if sent >= d {
                stats.drops.fetch_add(1, Ordering::SeqCst);
                note(format!("{status}, dropped after {sent} of {limit} body bytes"));
                client.flush()?;
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            want = want.min(d - sent);
        }
        if let Some(st) = stall_at {
            if !stalled && sent >= st {
                stalled = true;
                stats.stalls.fetch_add(1, Ordering::SeqCst);
                client.flush()?;
                std::thread::sleep(policy.stall);
            } else if !stalled {
                want = want.min(st - sent).max(1);
            }
        }
        let got = upr.read(&mut buf[..want as usize])?;
        if got == 0 {
            break;
        }
        if let Some(at) = corrupt_at.filter(|&at| (sent..sent + got as u64).contains(&at)) {
            buf[(at - sent) as usize] ^= 0x01;
        }
        client.write_all(&buf[..got])?;
        sent += got as u64;
        if blob_body {
            stats.blob_bytes.fetch_add(got as u64, Ordering::SeqCst);
            if let Some(d) = &blob {
                stats.per_blob.lock().unwrap().entry(d.clone()).or_default().1 += got as u64;
            }
        }
    }
    client.flush()?;
    match corrupt_at {
        Some(at) => note(format!("{status}, {sent} body bytes, byte {at} flipped")),
        None => note(format!("{status}, {sent} body bytes")),
    }
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// Wait while the policy holds blob bodies and enough blob bytes went through; true when
/// it did (the connection is then closed without another byte: a hold ends when the test
/// killed the client, and its bytes must not count in the next run).
fn hold(s: &State, first: &Policy) -> bool {
    let Some(limit) = first.hold_after_bytes else { return false };
    if s.stats.blob_bytes.load(Ordering::SeqCst) < limit {
        return false;
    }
    s.stats.held.fetch_add(1, Ordering::SeqCst);
    while !s.stop.load(Ordering::SeqCst)
        && s.policy.lock().unwrap().hold_after_bytes.is_some_and(|l| s.stats.blob_bytes.load(Ordering::SeqCst) >= l)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.stats.held.fetch_sub(1, Ordering::SeqCst);
    true
}

/// Debian's `docker-registry` over plain HTTP with htpasswd (bcrypt) auth, on a free
/// loopback port, stopped by pid.
pub struct PlainDistribution {
    tmp: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: RegistryProcess,
}

impl PlainDistribution {
    /// Start one, or `None` (test skipped) when docker-registry or skopeo is missing outside CI.
    pub fn start() -> Option<PlainDistribution> {
        if !have("docker-registry") || !have("skopeo") {
            return None;
        }
        let tmp = tempfile::Builder::new().prefix("airlift-plain-distribution").tempdir().expect("tempdir");
        let port = free_port();
        let user = "faults".to_string();
        let password = super::sha256_hex(format!("{port}{}", tmp.path().display()).as_bytes())[..24].to_string();
        let hash = bcrypt::hash(&password, 4).expect("bcrypt");
        let htpasswd = tmp.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let child = RegistryProcess::spawn(tmp.path(), &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n",
                data = tmp.path().join("data").display(),
                htpasswd = htpasswd.display(),
            ));
        let d = PlainDistribution { tmp, port, user, password, child };
        d.wait_ready();
        Some(d)
    }

    /// Ready when `GET /v2/` gets an HTTP answer (401 here).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                let mut head = [0u8; 12];
                if c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not come up: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("registry.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// Push an image (a skopeo source reference) to `name` over plain HTTP, every platform.
    pub fn push(&self, source: &str, name: &str) {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--all", "--dest-tls-verify=false", "--dest-creds"])
                .args([&self.creds(), source, &format!("docker://{}/{name}", self.host())]),
        );
    }

    /// The digest of the manifest `name` points at, and every blob of that image (the
    /// manifest, its config and layers) with its size. Single-platform images only.
    pub fn image_blobs(&self, name: &str) -> (String, BTreeMap<String, u64>) {
        let raw = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", &self.creds()])
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .expect("skopeo");
        assert!(raw.status.success(), "skopeo inspect {name}: {}", String::from_utf8_lossy(&raw.stderr));
        let digest = format!("sha256:{}", super::sha256_hex(&raw.stdout));
        let doc: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("manifest JSON");
        let mut blobs = BTreeMap::new();
        blobs.insert(digest.clone(), raw.stdout.len() as u64);
        for d in std::iter::once(&doc["config"]).chain(doc["layers"].as_array().expect("layers")) {
            blobs.insert(d["digest"].as_str().unwrap().to_string(), d["size"].as_u64().unwrap());
        }
        (digest, blobs)
    }

    /// An auth.json in `dir` giving this registry's credentials for `host` (the proxy's).
    pub fn authfile(&self, dir: &Path, host: &str) -> PathBuf {
        super::distribution::write_authfile(dir, host, &self.creds())
    }
}
