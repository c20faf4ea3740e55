//! Debian's `docker-registry` (CNCF distribution) with `auth: token`, and the token issuer
//! it trusts, both started by the test on free loopback ports.
//!
//! The issuer is a tiny HTTPS server (rustls, the certificate `airlift install` made for
//! `localhost`, so `--cert-dir` with its CA trusts both the registry and the issuer). It
//! checks basic credentials, grants every action asked for in each `scope=` parameter and
//! answers an ES256 JWT. distribution 2.8 verifies such a token by its header: `x5c` holds
//! the signing certificate (base64 DER), which must verify against the registry's
//! `rootcertbundle` (here: that same self-signed certificate); the claims `iss`, `aud`
//! must equal the configured issuer and service, and `exp`/`nbf` are checked with a
//! 60 s leeway (registry/auth/token/token.go: `Leeway`). Every request is recorded.

use crate::common::distribution::RegistryProcess;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

use super::registry::free_port;
use super::{airlift_path, have, run_ok};

/// distribution's clock-skew allowance on `exp` and `nbf` (registry/auth/token/token.go).
pub const DISTRIBUTION_LEEWAY: i64 = 60;

pub const SERVICE: &str = "airlift-test-registry";
pub const ISSUER: &str = "airlift-test-issuer";

/// How the issuer answers; changeable while it runs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub user: String,
    pub password: String,
    /// `exp` = issue time + this (seconds; may be negative).
    pub exp_offset: i64,
    /// `expires_in` of the answer.
    pub expires_in: u64,
    /// Answer a request whose scopes mention this text only after this pause.
    pub delay: Option<(String, Duration)>,
}

/// One request the issuer received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    /// The user of the basic credentials, if any.
    pub user: Option<String>,
    /// Whether the credentials were right (a token was issued).
    pub granted: bool,
    pub service: Option<String>,
    pub scopes: Vec<String>,
}

struct Signer {
    cert_der: Vec<u8>,
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    /// A fresh P-256 key and a self-signed certificate for it (PEM, for `rootcertbundle`).
    fn new() -> (Signer, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "airlift test token signer");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .expect("ring reads rcgen's PKCS#8");
        (Signer { cert_der: cert.der().to_vec(), key: pair, rng }, cert.pem())
    }

    /// A compact ES256 JWS (the signature is r||s, 64 bytes, as JWS wants).
    fn jwt(&self, claims: &Value) -> String {
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let signing_input = format!(
            "{}.{}",
            b64url.encode(serde_json::to_vec(&header).unwrap()),
            b64url.encode(serde_json::to_vec(claims).unwrap())
        );
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", b64url.encode(sig.as_ref()))
    }
}

struct IssuerState {
    policy: Policy,
    seen: Vec<Seen>,
    issued: u64,
}

/// The token issuer: `https://localhost:PORT/token` (or `http://` when started without TLS).
pub struct Issuer {
    pub port: u16,
    tls: bool,
    state: Arc<Mutex<IssuerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Issuer {
    /// `tls`: the server certificate and key to serve HTTPS with; `None`: plain HTTP.
    fn start(tls: Option<(&Path, &Path)>, signer: Signer, policy: Policy) -> Issuer {
        let config = tls.map(|(crt, key)| tls_config(crt, key));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind issuer");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(IssuerState { policy, seen: Vec::new(), issued: 0 }));
        let stop = Arc::new(AtomicBool::new(false));
        let signer = Arc::new(signer);
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = conn else { continue };
                    let (config, state, signer) = (config.clone(), state.clone(), signer.clone());
                    std::thread::spawn(move || {
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                        let _ = match config {
                            Some(config) => serve_tls(tcp, config, &state, &signer),
                            None => serve_one(tcp, &state, &signer),
                        };
                    });
                }
            })
        };
        Issuer { port, tls: tls.is_some(), state, stop, thread: Some(thread) }
    }

    pub fn realm(&self) -> String {
        format!("{}://localhost:{}/token", if self.tls { "https" } else { "http" }, self.port)
    }

    pub fn set_policy(&self, f: impl FnOnce(&mut Policy)) {
        f(&mut self.state.lock().unwrap().policy);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn issued(&self) -> u64 {
        self.state.lock().unwrap().issued
    }

    pub fn forget(&self) {
        let mut s = self.state.lock().unwrap();
        s.seen.clear();
        s.issued = 0;
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_config(server_crt: &Path, server_key: &Path) -> Arc<rustls::ServerConfig> {
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls_pemfile::certs(&mut std::fs::read(server_crt).unwrap().as_slice())
            .collect::<Result<_, _>>()
            .expect("server certificate PEM");
    let key = rustls_pemfile::private_key(&mut std::fs::read(server_key).unwrap().as_slice())
        .expect("server key PEM")
        .expect("a private key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("issuer TLS config");
    Arc::new(config)
}

fn serve_tls(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &Mutex<IssuerState>,
    signer: &Signer,
) -> std::io::Result<()> {
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    serve_one(&mut tls, state, signer)?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answer one request (then the connection is closed).
fn serve_one(mut tls: impl Read + Write, state: &Mutex<IssuerState>, signer: &Signer) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 << 10 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut basic: Option<(String, String)> = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                let value = value.trim();
                if let Some(b) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
                    if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                        let d = String::from_utf8_lossy(&d).into_owned();
                        if let Some((u, p)) = d.split_once(':') {
                            basic = Some((u.to_string(), p.to_string()));
                        }
                    }
                }
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let mut scopes = Vec::new();
    let mut service = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(k).as_str() {
            "scope" => scopes.extend(percent_decode(v).split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "service" => service = Some(percent_decode(v)),
            _ => {}
        }
    }
    let policy = state.lock().unwrap().policy.clone();
    if let Some((needle, pause)) = &policy.delay {
        if scopes.iter().any(|s| s.contains(needle.as_str())) {
            std::thread::sleep(*pause);
        }
    }
    let granted = method == "GET"
        && path == "/token"
        && basic.as_ref().is_some_and(|(u, p)| *u == policy.user && *p == policy.password);
    let (status, body) = if method != "GET" || path != "/token" {
        ("404 Not Found", serde_json::json!({"errors": [{"code": "NOT_FOUND"}]}))
    } else if !granted {
        ("401 Unauthorized", serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}))
    } else {
        let now = now_unix();
        let jti = {
            let mut s = state.lock().unwrap();
            s.issued += 1;
            s.issued
        };
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| {
                // repository:NAME:ACTIONS (NAME may hold a port-less host and slashes, never ':').
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
            })
            .collect();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": policy.user,
            "aud": SERVICE,
            "exp": now + policy.exp_offset,
            "nbf": now - 1,
            "iat": now,
            "jti": format!("airlift-test-{jti}"),
            "access": access,
        });
        let token = signer.jwt(&claims);
        ("200 OK", serde_json::json!({"token": token, "access_token": token, "expires_in": policy.expires_in}))
    };
    state.lock().unwrap().seen.push(Seen {
        at: Instant::now(),
        path: path.to_string(),
        user: basic.map(|(u, _)| u),
        granted: granted && status.starts_with("200"),
        service,
        scopes,
    });
    let body = serde_json::to_vec(&body).unwrap();
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("401") {
        resp.push_str("WWW-Authenticate: Basic realm=\"airlift-test-issuer\"\r\n");
    }
    resp.push_str("\r\n");
    tls.write_all(resp.as_bytes())?;
    tls.write_all(&body)?;
    tls.flush()
}

/// docker-registry with `auth: token`, TLS, and its issuer.
pub struct TokenDistribution {
    tmp: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Holds `ca.crt` (it signed both the registry's and the issuer's certificate).
    pub cert_dir: PathBuf,
    pub issuer: Issuer,
    child: RegistryProcess,
}

impl TokenDistribution {
    /// Start one, or `None` (test skipped) when docker-registry is not installed outside CI.
    pub fn start() -> Option<TokenDistribution> {
        Self::start_with(true)
    }

    /// `tls_issuer`: false serves the issuer (the realm) over plain HTTP.
    pub fn start_with(tls_issuer: bool) -> Option<TokenDistribution> {
        if !have("docker-registry") {
            return None;
        }
        let tmp = tempfile::Builder::new().prefix("airlift-token").tempdir().expect("tempdir");
        let port = free_port();
        let certs = tmp.path().join("certs-root");
        run_ok(Command::new(airlift_path()).args(["install", "--root"]).arg(&certs).args([
            "--hostname",
            "localhost",
            "--no-start",
            "--json",
        ]));
        let cert_dir = tmp.path().join("ca");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(certs.join("tls/ca.crt"), cert_dir.join("ca.crt")).unwrap();
        let (signer, signer_pem) = Signer::new();
        let bundle = tmp.path().join("token-signer.pem");
        std::fs::write(&bundle, signer_pem).unwrap();
        let user = "tokenuser".to_string();
        let password = "correct horse battery staple".to_string();
        let (crt, key) = (certs.join("tls/server.crt"), certs.join("tls/server.key"));
        let issuer = Issuer::start(
            tls_issuer.then_some((crt.as_path(), key.as_path())),
            signer,
            Policy { user: user.clone(), password: password.clone(), exp_offset: 300, expires_in: 300, delay: None },
        );
        let child = RegistryProcess::spawn(tmp.path(), &format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n\
                 auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
                data = tmp.path().join("data").display(),
                crt = certs.join("tls/server.crt").display(),
                key = certs.join("tls/server.key").display(),
                realm = issuer.realm(),
                bundle = bundle.display(),
            ));
        let d = TokenDistribution { tmp, port, user, password, cert_dir, issuer, child };
        d.wait_ready();
        Some(d)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The registry's log (level info: token rejections are logged there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("registry.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host())
    }

    /// Push an image (a skopeo source reference) to `name` with skopeo (bearer flow, push scope).
    pub fn push(&self, source: &str, name: &str) {
        run_ok(
            Command::new("skopeo").args(["copy", "--quiet", "--all", "--dest-cert-dir"]).arg(&self.cert_dir).args([
                "--dest-creds",
                &format!("{}:{}", self.user, self.password),
                source,
                &self.docker_ref(name),
            ]),
        );
    }

    /// The digest of the manifest (or index) `name` points at, read with skopeo (pull token).
    pub fn digest(&self, name: &str) -> String {
        let raw = run_ok(Command::new("skopeo").args(["inspect", "--raw", "--cert-dir"]).arg(&self.cert_dir).args([
            "--creds",
            &format!("{}:{}", self.user, self.password),
            &self.docker_ref(name),
        ]));
        format!("sha256:{}", super::sha256_hex(raw.as_bytes()))
    }

    /// An auth.json in `dir` with `user:password` for this registry.
    pub fn authfile(&self, dir: &Path, user: &str, password: &str) -> PathBuf {
        super::distribution::write_authfile(dir, &self.host(), &format!("{user}:{password}"))
    }
}

/// A TCP forwarder on loopback that holds every chunk the client sends for `delay`
/// before passing it on (TLS goes through untouched): each request to the registry then
/// takes at least `delay`, so a sequence of requests outlives a short-lived token.
pub struct SlowForwarder {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowForwarder {
    pub fn start(upstream: u16, delay: Duration) -> SlowForwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        std::thread::sleep(delay);
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        SlowForwarder { port, stop }
    }
}

impl Drop for SlowForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
