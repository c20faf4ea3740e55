//! A real `airlift serve` for tests: installed into a temp root with `airlift install`,
//! started on a free loopback port, reached over TLS with the CA install generated and the
//! credentials it printed. Readiness is polled (TCP connect, then `GET /v2/` answering 401
//! without credentials), never slept for. Dropping the handle stops the server with SIGTERM
//! and checks that it exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::{json, Value};

use super::{airlift_path, sha256_hex};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// How long a server gets to start or to stop.
const DEADLINE: Duration = Duration::from_secs(60);

/// A port nothing listens on right now: bind port 0 on loopback, read it, close.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub struct Registry {
    tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ca_file: PathBuf,
    /// The JSON document `airlift install --json` printed.
    pub install: Value,
    /// `DIR/ca.crt`, for skopeo's `--cert-dir`.
    pub cert_dir: PathBuf,
    child: Option<Child>,
    /// Extra `serve` arguments (e.g. `--read-only`), kept for restarts.
    serve_args: Vec<String>,
    client: Client,
    log_count: u32,
}

impl Registry {
    /// Install a registry into a fresh temp root and serve it.
    pub fn start() -> Registry {
        let mut r = Registry::install();
        r.serve(&[]);
        r
    }

    /// Install a registry into a fresh temp root (not started).
    pub fn install() -> Registry {
        let tmp = tempfile::Builder::new().prefix("airlift-registry").tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let port = free_port();
        let out = Command::new(airlift_path())
            .args(["install", "--root"])
            .arg(&root)
            .args(["--hostname", "localhost", "--port", &port.to_string(), "--user", "tester", "--no-start", "--json"])
            .output()
            .expect("run airlift install");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "airlift install failed with {}:\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let install: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("airlift install --json printed no JSON document ({e}): {stdout}"));
        let field = |k: &str| -> String {
            install[k].as_str().unwrap_or_else(|| panic!("install JSON has no string `{k}`: {install}")).to_string()
        };
        let (user, password, ca_file) = (field("user"), field("password"), PathBuf::from(field("ca_file")));
        let ca_file = if ca_file.is_absolute() { ca_file } else { root.join(ca_file) };
        let ca_pem = std::fs::read(&ca_file).unwrap_or_else(|e| panic!("{}: {e}", ca_file.display()));
        let cert_dir = tmp.path().join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), &ca_pem).unwrap();
        let client = https_client(&ca_pem, port);
        Registry {
            tmp,
            root,
            port,
            user,
            password,
            ca_file,
            install,
            cert_dir,
            child: None,
            serve_args: Vec::new(),
            client,
            log_count: 0,
        }
    }

    /// A registry root someone else installed (e.g. `unpack --root`), to be served on a
    /// free port with the credentials and CA given.
    pub fn adopt(root: &Path, user: &str, password: &str, ca_file: &Path) -> Registry {
        let tmp = tempfile::Builder::new().prefix("airlift-registry").tempdir().expect("tempdir");
        let port = free_port();
        let ca_pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("{}: {e}", ca_file.display()));
        let cert_dir = tmp.path().join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), &ca_pem).unwrap();
        Registry {
            tmp,
            root: root.to_path_buf(),
            port,
            user: user.to_string(),
            password: password.to_string(),
            ca_file: ca_file.to_path_buf(),
            install: Value::Null,
            cert_dir,
            child: None,
            serve_args: Vec::new(),
            client: https_client(&ca_pem, port),
            log_count: 0,
        }
    }

    /// Start `airlift serve` on this root and port and wait until it answers.
    pub fn serve(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "server already running");
        self.serve_args = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// A second server on the same root, on another port (e.g. `--read-only`).
    pub fn second_server(&self, extra: &[&str]) -> Registry {
        let port = free_port();
        let ca_pem = std::fs::read(&self.ca_file).unwrap();
        let tmp = tempfile::Builder::new().prefix("airlift-registry2").tempdir().expect("tempdir");
        let cert_dir = tmp.path().join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), &ca_pem).unwrap();
        let mut r = Registry {
            tmp,
            root: self.root.clone(),
            port,
            user: self.user.clone(),
            password: self.password.clone(),
            ca_file: self.ca_file.clone(),
            install: self.install.clone(),
            cert_dir,
            child: None,
            serve_args: extra.iter().map(|s| s.to_string()).collect(),
            client: https_client(&ca_pem, port),
            log_count: 0,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        self.log_count += 1;
        let log = self.tmp.path().join(format!("serve.{}.log", self.log_count));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(airlift_path())
            .args(["serve", "--root"])
            .arg(&self.root)
            .args(["--addr", &format!("127.0.0.1:{}", self.port)])
            .args(&self.serve_args)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .expect("spawn airlift serve");
        self.child = Some(child);
        self.wait_ready();
    }

    /// The server's output so far (stdout and stderr of the current run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("serve.{}.log", self.log_count))).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut last = String::from("never connected");
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("airlift serve exited with {status} before it was ready:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match self.client.get(self.url("/v2/")).send() {
                    Ok(r) if r.status() == 401 => return,
                    Ok(r) => last = format!("GET /v2/ without credentials answered {}", r.status()),
                    Err(e) => last = format!("GET /v2/: {e:#}"),
                }
            }
            if start.elapsed() > DEADLINE {
                panic!("airlift serve not ready after {DEADLINE:?} ({last}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGKILL the server and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("SIGKILL airlift serve");
        child.wait().unwrap();
    }

    /// SIGTERM the server, wait for it to exit, and check that it exited cleanly.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("airlift serve did not exit within {DEADLINE:?} of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "airlift serve exited with {status} on SIGTERM:\n{}",
            self.log()
        );
    }

    /// Stop (SIGTERM) and start again on the same root and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Start again after `kill9`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// The storage directory from ROOT/config.json.
    pub fn storage(&self) -> PathBuf {
        let config: Value = serde_json::from_slice(&std::fs::read(self.root.join("config.json")).unwrap()).unwrap();
        let s = PathBuf::from(config["storage"].as_str().unwrap_or("storage"));
        if s.is_absolute() {
            s
        } else {
            self.root.join(s)
        }
    }

    /// `localhost:PORT`
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("https://localhost:{}{path}", self.port)
        }
    }

    /// A `Location` header made absolute.
    pub fn location(&self, r: &Response) -> String {
        let loc = header(r, "location").unwrap_or_else(|| panic!("no Location header in {} response", r.status()));
        self.url(&loc)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new client of its own (its own connection pool), trusting the CA.
    pub fn new_client(&self) -> Client {
        https_client(&std::fs::read(&self.ca_file).unwrap(), self.port)
    }

    /// An authenticated request.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(&self.user, Some(&self.password))
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> Response {
        send(self.req(Method::GET, path))
    }

    pub fn head(&self, path: &str) -> Response {
        send(self.req(Method::HEAD, path))
    }

    pub fn delete(&self, path: &str) -> Response {
        send(self.req(Method::DELETE, path))
    }

    /// Start an upload session; returns its absolute URL.
    pub fn start_upload(&self, repo: &str) -> String {
        let r = send(self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")));
        assert_eq!(r.status(), 202, "POST /v2/{repo}/blobs/uploads/");
        self.location(&r)
    }

    /// Push a blob with POST + PUT (monolithic); returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        let loc = self.start_upload(repo);
        let r = send(
            self.req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
                .header("content-type", "application/octet-stream")
                .body(data.to_vec()),
        );
        assert_eq!(r.status(), 201, "PUT {loc} of {digest}: {}", r.text().unwrap_or_default());
        digest
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
        send(
            self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", media_type)
                .body(body.to_vec()),
        )
    }

    /// Push an image (blobs, then the manifest under `tag`).
    pub fn push_image(&self, repo: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.push_blob(repo, blob);
        }
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &image.manifest);
        assert_eq!(r.status(), 201, "PUT manifest {repo}:{tag}: {}", r.text().unwrap_or_default());
    }

    /// Pull an image by reference and check every byte against `image`.
    pub fn check_image(&self, repo: &str, reference: &str, image: &Image) {
        let r = self.get(&format!("/v2/{repo}/manifests/{reference}"));
        assert_eq!(r.status(), 200, "GET manifest {repo}:{reference}");
        let body = r.bytes().unwrap();
        assert!(body[..] == image.manifest[..], "manifest {repo}:{reference} differs from what was pushed");
        for blob in image.blobs() {
            let d = digest_of(blob);
            let r = self.get(&format!("/v2/{repo}/blobs/{d}"));
            assert_eq!(r.status(), 200, "GET blob {repo}@{d}");
            let got = r.bytes().unwrap();
            assert!(got.len() == blob.len() && got[..] == blob[..], "blob {repo}@{d}: content differs");
        }
    }

    /// `user:password`
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// `docker://localhost:PORT/NAME`
    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://localhost:{}/{name}", self.port)
    }

    /// A skopeo command with a permissive signature policy (the host's may be absent).
    pub fn skopeo(&self, subcommand: &str) -> Command {
        let policy = self.tmp.path().join("policy.json");
        if !policy.exists() {
            std::fs::write(&policy, br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        }
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy").arg(&policy).arg(subcommand);
        cmd
    }

    /// skopeo flags for a command that reads from this registry (`inspect`, `list-tags`).
    pub fn skopeo_args(&self) -> Vec<String> {
        vec!["--cert-dir".into(), self.cert_dir.display().to_string(), "--creds".into(), self.creds()]
    }

    /// skopeo copy flags for this registry as the source.
    pub fn skopeo_src_args(&self) -> Vec<String> {
        vec!["--src-cert-dir".into(), self.cert_dir.display().to_string(), "--src-creds".into(), self.creds()]
    }

    /// skopeo copy flags for this registry as the destination.
    pub fn skopeo_dest_args(&self) -> Vec<String> {
        vec!["--dest-cert-dir".into(), self.cert_dir.display().to_string(), "--dest-creds".into(), self.creds()]
    }

    /// `Authorization` header value.
    pub fn basic(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(self.creds()))
    }

    /// Send a hand-written HTTP/1.1 request over TLS: `head` is the request line and any
    /// extra header lines (no Host, Authorization or Connection: those are added), `body`
    /// is written as is, whatever the headers claim. With `close_early`, the client closes
    /// its side after the body instead of waiting politely. Returns the response, or why
    /// there was none (the server may close the connection instead of answering).
    pub fn raw(&self, head: &str, body: &[u8], close_early: bool) -> Result<RawResponse, String> {
        let mut request = String::new();
        let mut lines = head.lines();
        request.push_str(lines.next().expect("request line"));
        request.push_str("\r\n");
        request.push_str(&format!(
            "Host: localhost:{}\r\nAuthorization: {}\r\nConnection: close\r\n",
            self.port,
            self.basic()
        ));
        for l in lines {
            request.push_str(l);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let ca_pem = std::fs::read(&self.ca_file).unwrap();
        let mut tls = raw_tls(&ca_pem, self.port);
        tls.write_all(request.as_bytes()).map_err(|e| format!("write head: {e}"))?;
        if let Err(e) = tls.write_all(body).and_then(|_| tls.flush()) {
            return Err(format!("write body: {e}"));
        }
        if close_early {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tls.sock.shutdown(std::net::Shutdown::Write);
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match tls.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A peer that closes without close_notify, or resets after answering.
                Err(e) if !buf.is_empty() => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        RawResponse::parse(&buf).ok_or_else(|| format!("no HTTP response in {} bytes", buf.len()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return;
        }
        self.stop();
    }
}

fn https_client(ca_pem: &[u8], port: u16) -> Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).expect("CA certificate is PEM");
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .https_only(true)
        // Only loopback: localhost is pinned to 127.0.0.1 (the certificate names localhost).
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTPS client")
}

fn raw_tls(ca_pem: &[u8], port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let mut rd = ca_pem;
    for cert in rustls_pemfile::certs(&mut rd) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

pub fn send(rb: RequestBuilder) -> Response {
    rb.send().unwrap_or_else(|e| panic!("request failed: {e:#}"))
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
}

/// Append a query parameter to a URL that may already carry a query.
pub fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

/// The error codes of an OCI error envelope (`{"errors":[{"code":...}]}`).
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return vec![format!("<not JSON: {}>", String::from_utf8_lossy(body))],
    };
    v["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["code"].as_str().unwrap_or("<no code>").to_string()).collect())
        .unwrap_or_else(|| vec![format!("<no errors array: {v}>")])
}

/// Assert a response is `status` with an OCI error envelope carrying `code`.
#[track_caller]
pub fn assert_error(r: Response, status: u16, code: &str, what: &str) {
    let got = r.status().as_u16();
    let body = r.bytes().unwrap();
    assert_eq!(got, status, "{what}: status (body {})", String::from_utf8_lossy(&body));
    let codes = error_codes(&body);
    assert!(codes.iter().any(|c| c == code), "{what}: expected error code {code}, got {codes:?}");
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn parse(buf: &[u8]) -> Option<RawResponse> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let rest = &buf[end + 4..];
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            dechunk(rest)
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            rest[..n.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        Some(RawResponse { status, headers, body })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn codes(&self) -> Vec<String> {
        error_codes(&self.body)
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size else { break };
        if size == 0 || rest.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[(eol + 4 + size).min(rest.len())..];
    }
    out
}

/// A small OCI image built in memory: a config, layers of incompressible bytes, and the
/// manifest (bytes exactly as pushed).
#[derive(Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn new(seed: u64, layer_sizes: &[usize]) -> Image {
        let layers: Vec<Vec<u8>> =
            layer_sizes.iter().enumerate().map(|(i, &n)| super::noise(seed * 1000 + i as u64, n)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| digest_of(l)).collect::<Vec<_>>() },
            "config": { "Env": [format!("SEED={seed}")] },
        }))
        .unwrap();
        let manifest = manifest_for(&config, OCI_CONFIG, &layers, None);
        Image { config, layers, manifest }
    }

    pub fn digest(&self) -> String {
        digest_of(&self.manifest)
    }

    /// Config first, then the layers.
    pub fn blobs(&self) -> Vec<&[u8]> {
        std::iter::once(&self.config[..]).chain(self.layers.iter().map(|l| &l[..])).collect()
    }

    /// The descriptor of this image's manifest, for an index.
    pub fn descriptor(&self, platform: Option<(&str, &str)>) -> Value {
        let mut d = json!({ "mediaType": OCI_MANIFEST, "digest": self.digest(), "size": self.manifest.len() });
        if let Some((os, arch)) = platform {
            d["platform"] = json!({ "os": os, "architecture": arch });
        }
        d
    }
}

/// An OCI image manifest over these blobs; `extra` is merged into the top-level object.
pub fn manifest_for(config: &[u8], config_type: &str, layers: &[Vec<u8>], extra: Option<Value>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": config_type, "digest": digest_of(config), "size": config.len() },
        "layers": layers.iter().map(|l| json!({ "mediaType": OCI_LAYER, "digest": digest_of(l), "size": l.len() })).collect::<Vec<_>>(),
    });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).unwrap()
}

/// Every path under `dir`, relative, sorted (for "nothing was created" checks).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}
