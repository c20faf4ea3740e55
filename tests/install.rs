//! `airlift install`: the files a fresh install writes (modes, certificate chain and SAN,
//! htpasswd, config, unit, the copied executable), what it prints once, a rerun that
//! changes nothing, the operator's own certificate, and the errors (exit 2). Every run
//! passes `--no-start`: tests never touch systemd.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlift::registry::config::Config;
use base64::Engine as _;
use serde_json::Value;
use tokio_rustls::rustls;

use crate::common::{airlift, airlift_path, tempdir};

const HOST: &str = "registry.test.example";

/// `airlift --json install --root ROOT --no-start ARGS…`: exit code and the JSON document.
fn install_json(root: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = airlift()
        .args(["--json", "install", "--no-start", "--root"])
        .arg(root)
        .args(args)
        .output()
        .expect("run airlift install");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("--json printed no single JSON document ({e}):\n{stdout}"));
    (out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn install_ok(root: &Path, args: &[&str]) -> Value {
    let (code, doc, stderr) = install_json(root, args);
    assert_eq!(code, 0, "install failed: {doc}\n{stderr}");
    doc
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `root`: relative path → (mtime in ns, mode, contents).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (i64, u32, Vec<u8>)> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
        let bytes = if meta.is_file() { read(entry.path()) } else { Vec::new() };
        files.insert(rel, (meta.mtime() * 1_000_000_000 + meta.mtime_nsec(), meta.mode(), bytes));
    }
    files
}

/// A TLS handshake in memory: a client trusting `ca_pem` connects to `name` on a server
/// presenting `cert_pem` with `key_pem`. Checks the chain, the name (DNS or IP SAN) and
/// that the key is the certificate's, as podman or skopeo would.
fn handshake(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8], name: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let certs = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pemfile::private_key(&mut &key_pem[..]).unwrap().expect("a private key");
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server key: {e}"))?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), server_name).unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..16 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut bytes = &wire[..];
        while !bytes.is_empty() {
            server.read_tls(&mut bytes).unwrap();
            server.process_new_packets().map_err(|e| format!("server: {e}"))?;
        }
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let mut bytes = &wire[..];
        while !bytes.is_empty() {
            client.read_tls(&mut bytes).unwrap();
            client.process_new_packets().map_err(|e| format!("client: {e}"))?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err("the handshake did not finish".into())
}

fn no_temp_files(root: &Path) {
    for entry in walkdir::WalkDir::new(root) {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".airlift-tmp-"), "temp file left behind: {name}");
    }
}

#[test]
fn fresh_install_writes_a_complete_root() {
    let dir = tempdir();
    let root = dir.path().canonicalize().unwrap().join("registry");
    let doc = install_ok(&root, &["--hostname", HOST, "--port", "5443", "--user", "ops"]);

    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["fresh"], true);
    assert_eq!(doc["url"], format!("https://{HOST}:5443"));
    assert_eq!(doc["user"], "ops");
    let password = doc["password"].as_str().expect("password").to_string();
    assert!(password.len() >= 24 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
    assert_eq!(doc["ca_file"], root.join("tls/ca.crt").to_str().unwrap());
    assert_eq!(doc["podman_login"], format!("podman login {HOST}:5443 -u ops"));
    assert_eq!(doc["service"]["state"], "not-started");
    assert!(doc["trust"]["rhel"].as_str().unwrap().contains("update-ca-trust"), "{doc}");

    // Modes: secrets 0600, the executable 0755.
    for (file, want) in [
        ("tls/ca.key", 0o600),
        ("tls/server.key", 0o600),
        ("htpasswd", 0o600),
        ("tls/ca.crt", 0o644),
        ("tls/server.crt", 0o644),
        ("config.json", 0o644),
        ("airlift-registry.service", 0o644),
        ("bin/airlift", 0o755),
    ] {
        assert_eq!(mode(&root.join(file)), want, "mode of {file}");
    }
    assert!(root.join("storage").is_dir());
    assert_eq!(read(&root.join("bin/airlift")), read(&airlift_path()), "bin/airlift is a copy of airlift");
    no_temp_files(&root);

    // The htpasswd entry verifies the printed password (and only it).
    let htpasswd = String::from_utf8(read(&root.join("htpasswd"))).unwrap();
    let (user, hash) = htpasswd.trim_end().split_once(':').expect("user:hash");
    assert_eq!(user, "ops");
    assert!(hash.starts_with("$2y$"), "{hash}");
    assert!(bcrypt::verify(&password, hash).unwrap());
    assert!(!bcrypt::verify(format!("{password}x"), hash).unwrap());

    // The pull-secret entry is base64 of user:password, under HOST:PORT.
    let auth = doc["pull_secret"]["auths"][format!("{HOST}:5443")]["auth"].as_str().expect("auth entry");
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), format!("ops:{password}"));

    // The config, as serve and unpack --root read it.
    let config = Config::load(&root).unwrap();
    assert_eq!(config.version, 1);
    assert_eq!(config.hostname, HOST);
    assert_eq!(config.port, 5443);
    assert_eq!(config.listen, "0.0.0.0:5443");
    assert_eq!(config.storage, Path::new("storage"));
    assert_eq!(config.htpasswd, Path::new("htpasswd"));
    assert_eq!(config.tls_cert, Path::new("tls/server.crt"));
    assert_eq!(config.tls_key, Path::new("tls/server.key"));
    assert_eq!(config.ca_cert.as_deref(), Some(Path::new("tls/ca.crt")));

    // The unit runs the root's own copy of airlift on the root, hardened.
    let unit = String::from_utf8(read(&root.join("airlift-registry.service"))).unwrap();
    let r = root.display();
    for line in [
        format!("ExecStart={r}/bin/airlift serve --root {r}"),
        format!("ReadWritePaths={r}"),
        "Restart=on-failure".into(),
        "NoNewPrivileges=yes".into(),
        "ProtectSystem=strict".into(),
        "WantedBy=multi-user.target".into(),
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}:\n{unit}");
    }

    // The chain: the CA signs a server certificate for the hostname, localhost and
    // loopback, whose key is server.key; other names are refused.
    let (ca, cert, key) =
        (read(&root.join("tls/ca.crt")), read(&root.join("tls/server.crt")), read(&root.join("tls/server.key")));
    for name in [HOST, "localhost", "127.0.0.1", "::1"] {
        handshake(&ca, &cert, &key, name).unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
    }
    let refused = handshake(&ca, &cert, &key, "other.example").expect_err("a name not in the SAN");
    assert!(refused.contains("client"), "{refused}");
    // The server certificate is not a CA: trusting it alone does not make it verify.
    assert!(handshake(&cert, &cert, &key, HOST).is_err());

    // The CA may only vouch for the registry's names: a certificate for another site
    // signed with ca.key is refused by clients that trust the CA.
    let ca_key = String::from_utf8(read(&root.join("tls/ca.key"))).unwrap();
    let (good, good_key) = sign_with_ca(&ca_key, HOST, HOST);
    handshake(&ca, good.as_bytes(), good_key.as_bytes(), HOST).expect("a certificate for the registry's name");
    let (rogue, rogue_key) = sign_with_ca(&ca_key, HOST, "www.bank.example");
    let refused = handshake(&ca, rogue.as_bytes(), rogue_key.as_bytes(), "www.bank.example")
        .expect_err("the CA is constrained to the registry's names");
    assert!(refused.to_lowercase().contains("name"), "{refused}");
}

/// A certificate for `name`, signed with the key of the CA install made for `host` (the
/// issuer is rebuilt from the CA's subject and key, as someone holding ca.key could).
fn sign_with_ca(ca_key_pem: &str, host: &str, name: &str) -> (String, String) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::from_pem(ca_key_pem).unwrap();
    let mut issuer = CertificateParams::default();
    issuer.distinguished_name = DistinguishedName::new();
    issuer.distinguished_name.push(DnType::OrganizationName, "airlift");
    issuer.distinguished_name.push(DnType::CommonName, format!("airlift registry CA {host}"));
    issuer.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = issuer.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer, &ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn human_output_shows_credentials_once() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let out = airlift().args(["install", "--no-start", "--hostname", HOST, "--root"]).arg(&root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let password = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .unwrap_or_else(|| panic!("no password line:\n{text}"))
        .trim()
        .to_string();
    let htpasswd = String::from_utf8(read(&root.join("htpasswd"))).unwrap();
    let (user, hash) = htpasswd.trim_end().split_once(':').unwrap();
    assert_eq!(user, "init");
    assert!(bcrypt::verify(&password, hash).unwrap(), "the printed password is the stored one");
    let ca = root.canonicalize().unwrap().join("tls/ca.crt");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("init:{password}"));
    for want in [
        format!("https://{HOST}:8443"),
        format!("cp {} /etc/pki/ca-trust/source/anchors/", ca.display()),
        "update-ca-trust".to_string(),
        "update-ca-certificates".to_string(),
        format!(r#"{{"auths":{{"{HOST}:8443":{{"auth":"{auth}"}}}}}}"#),
        format!("podman login {HOST}:8443 -u init"),
        "systemctl enable --now airlift-registry.service".to_string(),
        "bin/airlift serve --root".to_string(),
    ] {
        assert!(text.contains(&want), "output lacks {want:?}:\n{text}");
    }

    // Once: a rerun says the root is installed and shows no password.
    let again = airlift().args(["install", "--no-start", "--root"]).arg(&root).output().unwrap();
    assert!(again.status.success());
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("already a registry root"), "{text}");
    assert!(!text.contains(&password) && !text.contains(&auth), "{text}");
}

#[test]
fn rerun_changes_nothing() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let first = install_ok(&root, &["--hostname", HOST]);
    let before = snapshot(&root);
    assert!(before.len() > 8, "{before:?}");

    let again = install_ok(&root, &["--hostname", HOST]);
    assert_eq!(again["fresh"], false);
    assert_eq!(again["url"], first["url"]);
    assert_eq!(again["user"], "init");
    assert_eq!(again["ca_file"], first["ca_file"]);
    assert!(again.get("password").is_none() && again.get("pull_secret").is_none(), "{again}");
    assert_eq!(again["service"]["state"], "unchanged");
    assert_eq!(snapshot(&root), before, "a rerun rewrote files");

    // Other options on an installed root are reported as ignored, and still nothing changes.
    let (code, doc, stderr) = install_json(&root, &["--hostname", "other.example", "--port", "9443"]);
    assert_eq!(code, 0, "{doc}\n{stderr}");
    assert_eq!(doc["fresh"], false);
    assert_eq!(doc["url"], format!("https://{HOST}:8443"));
    let ignored = doc["ignored"].to_string();
    assert!(ignored.contains("other.example") && ignored.contains("9443"), "{doc}");
    assert!(stderr.contains("ignored"), "{stderr}");
    assert_eq!(snapshot(&root), before, "a rerun with other options rewrote files");
}

#[test]
fn a_killed_install_is_redone() {
    // Without config.json the root is not installed: install fills it again.
    let dir = tempdir();
    let root = dir.path().join("registry");
    install_ok(&root, &["--hostname", HOST]);
    fs::remove_file(root.join("config.json")).unwrap();
    fs::write(root.join("tls/.airlift-tmp-left"), b"half").unwrap();
    let doc = install_ok(&root, &["--hostname", HOST]);
    assert_eq!(doc["fresh"], true);
    let hash = String::from_utf8(read(&root.join("htpasswd"))).unwrap();
    assert!(bcrypt::verify(doc["password"].as_str().unwrap(), hash.trim_end().split_once(':').unwrap().1).unwrap());
    no_temp_files(&root);
}

/// A CA and a server certificate for `name`, made like an operator's PKI would:
/// (chain PEM: leaf then CA, leaf key PEM, CA PEM).
fn operator_pki(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    (format!("{}{}", leaf.pem(), ca.pem()), key.serialize_pem(), ca.pem())
}

#[test]
fn operator_certificate_is_copied_and_no_ca_is_made() {
    let dir = tempdir();
    let (chain, key, ca) = operator_pki(HOST);
    let (cert_file, key_file) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    fs::write(&cert_file, &chain).unwrap();
    fs::write(&key_file, &key).unwrap();
    let root = dir.path().join("registry");
    let doc = install_ok(
        &root,
        &["--hostname", HOST, "--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap()],
    );
    assert_eq!(doc["fresh"], true);
    assert!(doc["ca_file"].is_null(), "{doc}");
    assert!(doc.get("trust").is_none(), "{doc}");
    assert!(!root.join("tls/ca.crt").exists() && !root.join("tls/ca.key").exists(), "a CA was generated");
    assert_eq!(read(&root.join("tls/server.crt")), chain.as_bytes());
    assert_eq!(read(&root.join("tls/server.key")), key.as_bytes());
    assert_eq!(mode(&root.join("tls/server.key")), 0o600);
    let config = Config::load(&root).unwrap();
    assert_eq!(config.ca_cert, None);
    assert_eq!(config.tls_cert, Path::new("tls/server.crt"));
    handshake(ca.as_bytes(), &read(&root.join("tls/server.crt")), &read(&root.join("tls/server.key")), HOST).unwrap();
}

#[test]
fn operator_certificate_errors_exit_2_and_write_nothing() {
    let dir = tempdir();
    let (chain, key, _) = operator_pki(HOST);
    let (_, other_key, _) = operator_pki(HOST);
    let write = |name: &str, text: &str| -> String {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (cert, key, other_key) = (write("site.crt", &chain), write("site.key", &key), write("other.key", &other_key));
    let garbage = write("garbage.crt", "not a certificate\n");
    let key_as_cert = key.clone();
    let missing = dir.path().join("absent.key").to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--hostname", HOST, "--tls-cert", &cert, "--tls-key", &other_key], "is not the private key"),
        (
            &["--hostname", "elsewhere.example", "--tls-cert", &cert, "--tls-key", &key],
            "not valid for elsewhere.example",
        ),
        (&["--hostname", HOST, "--tls-cert", &garbage, "--tls-key", &key], "no certificate"),
        (&["--hostname", HOST, "--tls-cert", &key_as_cert, "--tls-key", &key], "no certificate"),
        (&["--hostname", HOST, "--tls-cert", &cert, "--tls-key", &cert], "no private key"),
        (&["--hostname", HOST, "--tls-cert", &cert, "--tls-key", &missing], "absent.key"),
    ];
    for (args, want) in cases {
        let root = dir.path().join("registry");
        let (code, doc, stderr) = install_json(&root, args);
        assert_eq!(code, 2, "{args:?}: {doc}\n{stderr}");
        assert_eq!(doc["status"], "error");
        assert!(doc["error"].as_str().unwrap().contains(want), "{args:?}: wanted {want:?} in {doc}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!root.exists(), "{args:?}: the root was created");
    }
    // --tls-cert without --tls-key is a usage error too.
    let (code, _, _) = install_json(&dir.path().join("registry"), &["--hostname", HOST, "--tls-cert", &cert]);
    assert_eq!(code, 2);
}

#[test]
fn bad_hostname_user_or_port_exit_2() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let cases: [(&[&str], &str); 8] = [
        (&["--hostname", "bad_host"], "invalid hostname"),
        (&["--hostname=-lead.example"], "invalid hostname"),
        (&["--hostname", "a..b"], "invalid hostname"),
        (&["--hostname", "::1"], "invalid hostname"),
        (&["--hostname", "host name"], "invalid hostname"),
        (&["--hostname", HOST, "--port", "0"], "--port 0"),
        (&["--hostname", HOST, "--user", "a:b"], "invalid user name"),
        (&["--hostname", HOST, "--user", ""], "invalid user name"),
    ];
    for (args, want) in cases {
        let (code, doc, stderr) = install_json(&root, args);
        assert_eq!(code, 2, "{args:?}: {doc}\n{stderr}");
        assert!(doc["error"].as_str().unwrap().contains(want), "{args:?}: wanted {want:?} in {doc}");
        assert!(!root.exists(), "{args:?}: the root was created");
    }
}

#[test]
fn default_hostname_is_this_hosts_name() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (code, doc, stderr) = install_json(&root, &[]);
    match airlift::registry::install::check_hostname(name.trim()) {
        Ok(host) => {
            assert_eq!(code, 0, "{doc}\n{stderr}");
            assert_eq!(doc["url"], format!("https://{host}:8443"));
        }
        Err(_) => {
            assert_eq!(code, 2, "{doc}");
            assert!(doc["error"].as_str().unwrap().contains("--hostname"), "{doc}");
        }
    }
}

#[test]
fn unusable_root_exits_2() {
    let dir = tempdir();
    // Below a regular file: cannot be created (whoever runs the test, root included).
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let (code, doc, _) = install_json(&file.join("registry"), &["--hostname", HOST]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("cannot create the registry root"), "{doc}");

    // A directory holding something else is not taken over.
    let busy = dir.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("notes.txt"), b"mine").unwrap();
    let (code, doc, _) = install_json(&busy, &["--hostname", HOST]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("not a registry root"), "{doc}");
    assert_eq!(fs::read_dir(&busy).unwrap().count(), 1, "install wrote into a foreign directory");

    // A path that cannot go into a systemd unit unquoted.
    let (code, doc, _) = install_json(&dir.path().join("with space"), &["--hostname", HOST]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("systemd unit"), "{doc}");
}

/// The root's files agree with each other and with `password`: htpasswd verifies it, the
/// server certificate is signed by the CA, names HOST and goes with server.key.
fn assert_consistent(root: &Path, password: &str) {
    let htpasswd = String::from_utf8(read(&root.join("htpasswd"))).unwrap();
    let (_, hash) = htpasswd.trim_end().split_once(':').expect("user:hash");
    assert!(bcrypt::verify(password, hash).unwrap(), "{}: the reported password is not the stored one", root.display());
    let (ca, cert, key) =
        (read(&root.join("tls/ca.crt")), read(&root.join("tls/server.crt")), read(&root.join("tls/server.key")));
    handshake(&ca, &cert, &key, HOST).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    Config::load(root).unwrap();
}

/// Two runs of `args` (ending in `--root`) on `root` at once: (exit code, JSON document) of each.
fn run_pair(args: &[&str], root: &Path) -> Vec<(i32, Value, String)> {
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(airlift_path())
                .args(args)
                .arg(root)
                .env_remove("SOURCE_DATE_EPOCH")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn airlift")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let doc: Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("--json printed no single JSON document ({e}):\n{stdout}"));
            (out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

/// Defect 13: two installs on one fresh root at once. Both succeed, exactly one reports a
/// (new) password, that password is the stored one and the certificate goes with its key.
#[test]
fn concurrent_installs_agree_on_one_root() {
    let dir = tempdir();
    for i in 0..20 {
        let root = dir.path().join(format!("registry-{i}"));
        let runs = run_pair(&["--json", "install", "--no-start", "--hostname", HOST, "--root"], &root);
        for (code, doc, stderr) in &runs {
            assert_eq!(*code, 0, "pair {i}: {doc}\n{stderr}");
        }
        let passwords: Vec<&str> = runs.iter().filter_map(|(_, doc, _)| doc["password"].as_str()).collect();
        assert_eq!(passwords.len(), 1, "pair {i}: exactly one run installs: {runs:?}");
        assert_consistent(&root, passwords[0]);
        no_temp_files(&root);
    }
}

/// Defect 13 through `unpack --root`: the same, with the install done on first use.
#[test]
fn concurrent_first_use_unpacks_agree_on_one_root() {
    let dir = tempdir();
    let (bundle, public) =
        crate::common::pack_sources(dir.path(), &[format!("oci:{}", crate::common::testdata("layout").display())]);
    for i in 0..20 {
        let root = dir.path().join(format!("registry-{i}"));
        let args = [
            "--json",
            "unpack",
            bundle.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
            "--no-start",
            "--hostname",
            HOST,
            "--root",
        ];
        let runs = run_pair(&args, &root);
        for (code, doc, stderr) in &runs {
            // Both succeed: the install is locked, and so is the unpack (defect 14).
            assert_eq!(*code, 0, "pair {i}: {doc}\n{stderr}");
        }
        // The run that installed says so in its document, failed or not (`credentials`).
        let passwords: Vec<&str> =
            runs.iter().filter_map(|(_, doc, _)| doc["credentials"]["password"].as_str()).collect();
        assert_eq!(passwords.len(), 1, "pair {i}: exactly one run installs: {runs:?}");
        assert_consistent(&root, passwords[0]);
    }
}

/// Defect 13: a root left with a server certificate that is not server.key's (as a race
/// once left it) is not "installed": install repairs it, keeps the CA clients already
/// trust, and keeps the password that was shown.
#[test]
fn a_root_with_a_mismatched_certificate_is_repaired() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let first = install_ok(&root, &["--hostname", HOST]);
    let password = first["password"].as_str().unwrap().to_string();
    let ca = read(&root.join("tls/ca.crt"));
    // A certificate from the same CA but for another key.
    let (cert, _) = sign_with_ca(&String::from_utf8(read(&root.join("tls/ca.key"))).unwrap(), HOST, HOST);
    fs::write(root.join("tls/server.crt"), cert).unwrap();
    let handshake_broken =
        handshake(&ca, &read(&root.join("tls/server.crt")), &read(&root.join("tls/server.key")), HOST).is_err();
    assert!(handshake_broken, "the test did not break the root");

    let doc = install_ok(&root, &["--hostname", HOST]);
    assert_eq!(doc["fresh"], true, "a broken root is not reported as already installed: {doc}");
    assert!(doc.get("password").is_none(), "the password already shown is kept: {doc}");
    assert!(doc["repaired"].to_string().contains("server.crt"), "{doc}");
    assert_eq!(read(&root.join("tls/ca.crt")), ca, "a good CA is not replaced");
    assert_consistent(&root, &password);
    // Repaired means installed: the next run changes nothing.
    assert_eq!(install_ok(&root, &["--hostname", HOST])["fresh"], false);
}

/// Whether `user:password` logs in to `airlift serve` on `root` (started here, stopped on return).
fn logs_in(root: &Path, user: &str, password: &str) -> bool {
    let ca = root.canonicalize().unwrap().join("tls/ca.crt");
    let mut reg = crate::common::registry::Registry::adopt(root, user, password, &ca);
    reg.serve(&[]);
    let status = crate::common::registry::send(reg.req(reqwest::Method::GET, "/v2/")).status().as_u16();
    reg.stop();
    assert!(status == 200 || status == 401, "GET /v2/ answered {status}");
    status == 200
}

/// A bundle of the test layout (`dir`/bundle) and its public key.
fn bundle_of_testdata(dir: &Path) -> (PathBuf, PathBuf) {
    crate::common::pack_sources(dir, &[format!("oci:{}", crate::common::testdata("layout").display())])
}

/// `airlift --json unpack BUNDLE --key PUB --root ROOT --no-start --hostname HOST EXTRA…`.
fn unpack_root_json(bundle: &Path, public: &Path, root: &Path, extra: &[&str]) -> (i32, Value, String) {
    let out = airlift()
        .args(["--json", "unpack"])
        .arg(bundle)
        .arg("--key")
        .arg(public)
        .arg("--root")
        .arg(root)
        .args(["--no-start", "--hostname", HOST])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("--json printed no single JSON document ({e}):\n{stdout}"));
    (out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Defect 16: a first-use `unpack --root --json` that fails after installing the registry
/// (here: a prefix that makes no valid repository name, exit 2; then a damaged volume,
/// exit 1) still gives the credentials, in its one JSON document and at once on stderr,
/// and they log in.
#[test]
fn first_use_credentials_survive_a_failed_unpack() {
    let dir = tempdir();
    let (bundle, public) = bundle_of_testdata(dir.path());

    let root = dir.path().join("registry");
    let (code, doc, stderr) = unpack_root_json(&bundle, &public, &root, &["--prefix", "Bad..Prefix"]);
    assert_eq!(code, 2, "{doc}\n{stderr}");
    assert_eq!(doc["status"], "error", "{doc}");
    let password = doc["credentials"]["password"].as_str().unwrap_or_else(|| panic!("no credentials in {doc}"));
    assert_eq!(doc["credentials"]["user"], "init", "{doc}");
    assert!(stderr.contains(password), "the password is not on stderr at install time:\n{stderr}");
    assert!(logs_in(&root, "init", password), "the reported password does not log in");

    // A damaged volume: the report (exit 1) carries them too.
    let damaged = dir.path().join("damaged");
    fs::create_dir(&damaged).unwrap();
    for entry in fs::read_dir(&bundle).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let volume = damaged.join("airlift.0001.tar");
    let mut bytes = read(&volume);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&volume, bytes).unwrap();
    let root = dir.path().join("registry-2");
    let (code, doc, stderr) = unpack_root_json(&damaged, &public, &root, &[]);
    assert_eq!(code, 1, "{doc}\n{stderr}");
    let password = doc["credentials"]["password"].as_str().unwrap_or_else(|| panic!("no credentials in {doc}"));
    assert_consistent(&root, password);
}

/// Defect 16: `install --reset-password` makes a new password for the initial user; it logs
/// in (serve reads htpasswd when it starts: restarted here) and the old one no longer does.
#[test]
fn reset_password_replaces_the_old_one() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    let old = install_ok(&root, &["--hostname", HOST])["password"].as_str().unwrap().to_string();
    let before = snapshot(&root);

    let doc = install_ok(&root, &["--reset-password"]);
    assert_eq!(doc["password_reset"], true, "{doc}");
    assert_eq!(doc["user"], "init", "{doc}");
    let new = doc["password"].as_str().unwrap_or_else(|| panic!("no password in {doc}")).to_string();
    assert_ne!(new, old);
    assert!(doc["pull_secret"]["auths"][format!("{HOST}:8443")]["auth"].is_string(), "{doc}");
    assert_eq!(mode(&root.join("htpasswd")), 0o600);
    no_temp_files(&root);
    // Only htpasswd changed.
    let after = snapshot(&root);
    for (path, file) in &before {
        if path != Path::new("htpasswd") && path != Path::new("") {
            assert_eq!(after.get(path), Some(file), "{} changed", path.display());
        }
    }
    assert!(logs_in(&root, "init", &new), "the new password does not log in");
    assert!(!logs_in(&root, "init", &old), "the old password still logs in");

    // Human output shows it; an unknown user is refused (exit 2) and changes nothing.
    let out = airlift()
        .args(["install", "--root"])
        .arg(&root)
        .args(["--reset-password", "--user", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    let out = airlift().args(["install", "--root"]).arg(&root).arg("--reset-password").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let shown =
        text.lines().find_map(|l| l.trim().strip_prefix("password:")).unwrap_or_else(|| panic!("{text}")).trim();
    assert!(logs_in(&root, "init", shown));
    // A root that is not installed has no password to reset.
    let (code, doc, _) = install_json(&dir.path().join("empty"), &["--reset-password"]);
    assert_eq!(code, 2, "{doc}");
}

/// Defect 13: a root whose htpasswd is gone (config.json present) is not installed; install
/// completes it with a new password, reported once, and keeps the certificates.
#[test]
fn a_root_without_htpasswd_gets_a_new_password() {
    let dir = tempdir();
    let root = dir.path().join("registry");
    install_ok(&root, &["--hostname", HOST]);
    let (ca, cert) = (read(&root.join("tls/ca.crt")), read(&root.join("tls/server.crt")));
    fs::remove_file(root.join("htpasswd")).unwrap();
    let doc = install_ok(&root, &[]);
    assert_eq!(doc["fresh"], true, "{doc}");
    assert!(doc["repaired"].to_string().contains("htpasswd"), "{doc}");
    let password = doc["password"].as_str().unwrap_or_else(|| panic!("no new password in {doc}"));
    assert_consistent(&root, password);
    assert_eq!(read(&root.join("tls/ca.crt")), ca);
    assert_eq!(read(&root.join("tls/server.crt")), cert, "a good server certificate is kept");
    assert_eq!(doc["url"], format!("https://{HOST}:8443"), "the hostname is the root's");
}
