//! Debian's `docker-registry` (CNCF distribution) as a real peer: TLS with a certificate
//! and htpasswd made by `airlift install`, on a free loopback port, stopped by pid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::registry::free_port;
use super::{airlift_path, have, run_ok};

pub struct Distribution {
    _tmp: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Holds `ca.crt`: for skopeo's `--cert-dir` and airlift's `--cert-dir`.
    pub cert_dir: PathBuf,
    child: RegistryProcess,
}

impl Distribution {
    /// Start one, or `None` (test skipped) when docker-registry is not installed outside CI.
    pub fn start() -> Option<Distribution> {
        if !have("docker-registry") {
            return None;
        }
        let tmp = tempfile::Builder::new().prefix("airlift-distribution").tempdir().expect("tempdir");
        let port = free_port();
        let certs = tmp.path().join("certs-root");
        let out = run_ok(Command::new(airlift_path()).args(["install", "--root"]).arg(&certs).args([
            "--hostname",
            "localhost",
            "--user",
            "dist",
            "--no-start",
            "--json",
        ]));
        let install: Value = serde_json::from_str(&out).expect("install --json");
        let password = install["password"].as_str().expect("password").to_string();
        // The same `$2y$` line install wrote, at bcrypt cost 4 instead of 10: distribution
        // checks the password on every request, and at cost 10 each skopeo push of a small
        // image took seconds on a loaded host.
        let hash = bcrypt::hash_with_result(&password, 4).expect("bcrypt").format_for_version(bcrypt::Version::TwoY);
        std::fs::write(certs.join("htpasswd"), format!("dist:{hash}\n")).unwrap();
        let cert_dir = tmp.path().join("ca");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(certs.join("tls/ca.crt"), cert_dir.join("ca.crt")).unwrap();
        let child = RegistryProcess::spawn(tmp.path(), &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n",
                data = tmp.path().join("data").display(),
                crt = certs.join("tls/server.crt").display(),
                key = certs.join("tls/server.key").display(),
                htpasswd = certs.join("htpasswd").display(),
            ));
        let d = Distribution { _tmp: tmp, port, user: "dist".into(), password, cert_dir, child };
        d.wait_ready();
        Some(d)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let probe = Command::new("skopeo")
                .args(["inspect", "--raw", "--cert-dir"])
                .arg(&self.cert_dir)
                .args(["--creds", &self.creds()])
                .arg(self.docker_ref("probe/none:none"))
                .output()
                .expect("skopeo");
            // Any HTTP answer (here: manifest unknown) means the server is up.
            let err = String::from_utf8_lossy(&probe.stderr);
            if !err.contains("connection refused") && !err.contains("connect: ") {
                return;
            }
            assert!(Instant::now() < deadline, "docker-registry did not come up: {err}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host())
    }

    /// Push an image (a skopeo source reference) to `name`, every platform; returns the
    /// digest of what the registry now holds (skopeo may rewrite a manifest on the way).
    pub fn push(&self, source: &str, name: &str) -> String {
        let digestfile = tempfile::NamedTempFile::new().expect("temp file");
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--all", "--digestfile"])
                .arg(digestfile.path())
                .arg("--dest-cert-dir")
                .arg(&self.cert_dir)
                .args(["--dest-creds", &self.creds(), source, &self.docker_ref(name)]),
        );
        std::fs::read_to_string(digestfile.path()).expect("skopeo --digestfile").trim().to_string()
    }

    /// The digest of the manifest (or index) `name` points at.
    pub fn digest(&self, name: &str) -> String {
        let raw = Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(&self.cert_dir)
            .args(["--creds", &self.creds(), &self.docker_ref(name)])
            .output()
            .expect("skopeo");
        assert!(raw.status.success(), "skopeo inspect {name}: {}", String::from_utf8_lossy(&raw.stderr));
        format!("sha256:{}", super::sha256_hex(&raw.stdout))
    }

    /// `airlift pack` from this registry into DIR/bundle, signed with DIR/keys/site.key
    /// (made on first use), with DIR's auth.json.
    pub fn pack_cmd(&self, dir: &std::path::Path) -> assert_cmd::Command {
        let key = dir.join("keys/site.key");
        if !key.exists() {
            super::keygen(&dir.join("keys"), "site");
        }
        let mut cmd = super::airlift();
        cmd.args(["pack", "--no-installer", "--key"])
            .arg(&key)
            .arg("--out")
            .arg(dir.join("bundle"))
            .arg("--authfile")
            .arg(self.authfile(dir))
            .arg("--cert-dir")
            .arg(&self.cert_dir);
        cmd
    }

    /// An auth.json holding this registry's credentials.
    pub fn authfile(&self, dir: &std::path::Path) -> PathBuf {
        write_authfile(dir, &self.host(), &self.creds())
    }
}

/// A docker-registry process started from `config` (YAML) in `dir`, logging to
/// `dir/registry.log`; stopped by pid when dropped.
pub struct RegistryProcess(Child);

impl RegistryProcess {
    pub fn spawn(dir: &std::path::Path, config: &str) -> RegistryProcess {
        let path = dir.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        RegistryProcess(child)
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this harness started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// An auth.json in `dir` giving `creds` (user:password) for `host`.
pub fn write_authfile(dir: &std::path::Path, host: &str, creds: &str) -> PathBuf {
    use base64::Engine;
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(creds);
    let path = dir.join("auth.json");
    let doc = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}
