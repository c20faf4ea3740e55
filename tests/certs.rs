//! The registry's certificates over time (`install --renew`, `--renew-ca`,
//! `--use-next-ca`), serve's reload and expiry warning, `airlift status` and
//! `airlift uninstall`. skopeo pulls through the real server before and after a renewal,
//! trusting the same CA file.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_rustls::rustls;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::registry::{Image, Registry};
use crate::common::{airlift, have, tempdir};

const DEADLINE: Duration = Duration::from_secs(20);

/// `airlift --json ARGS…`: exit code and the one JSON document.
fn json(args: &[&str], root: &Path) -> (i32, Value) {
    let out = airlift().arg("--json").args(args).arg("--root").arg(root).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON document ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

fn json_ok(args: &[&str], root: &Path) -> Value {
    let (code, doc) = json(args, root);
    assert_eq!(code, 0, "airlift {args:?} failed: {doc}");
    doc
}

/// The serial of the certificate the server on `port` presents (chain not checked here:
/// skopeo does that).
fn served_serial(port: u16) -> String {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let der = conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.tbs_certificate.raw_serial_as_string()
}

/// Wait (bounded) until the server presents the certificate with `serial`.
fn wait_for_serial(port: u16, serial: &str) {
    let start = Instant::now();
    while served_serial(port) != serial {
        assert!(start.elapsed() < DEADLINE, "serve still presents the old certificate after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) until the server's log holds `text`.
fn wait_for_log(reg: &Registry, text: &str) -> String {
    let start = Instant::now();
    loop {
        let log = reg.log();
        if log.contains(text) {
            return log;
        }
        assert!(start.elapsed() < DEADLINE, "no {text:?} in the log after {DEADLINE:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// skopeo inspects `app:v1` trusting the CA files in `cert_dir`; true when it could.
fn skopeo_pulls(reg: &Registry, cert_dir: &Path) -> bool {
    let out = reg
        .skopeo("inspect")
        .args(["--cert-dir", &cert_dir.display().to_string(), "--creds", &reg.creds(), "--raw"])
        .arg(reg.docker_ref("app:v1"))
        .output()
        .unwrap();
    out.status.success()
}

/// A certificate directory for skopeo holding `pem` as its one CA file.
fn cert_dir_with(dir: &Path, name: &str, pem: &[u8]) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ca.crt"), pem).unwrap();
    d
}

#[test]
fn renewal_while_serving_keeps_the_ca_and_skopeo_pulls_before_and_after() {
    if !have("skopeo") {
        return;
    }
    let mut reg = Registry::start();
    reg.push_image("app", "v1", &Image::new(1, &[2000]));
    assert!(skopeo_pulls(&reg, &reg.cert_dir), "skopeo cannot pull before the renewal");
    let ca_before = std::fs::read(&reg.ca_file).unwrap();
    let serial_before = served_serial(reg.port);

    let doc = json_ok(&["install", "--renew", "--san", "127.0.0.2"], &reg.root);
    let serial = doc["certificate"]["serial"].as_str().unwrap().to_string();
    assert_eq!(doc["previous"]["serial"], serial_before.as_str());
    assert_ne!(serial, serial_before);
    let names: Vec<&str> = doc["certificate"]["names"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for name in ["localhost", "127.0.0.1", "127.0.0.2"] {
        assert!(names.contains(&name), "{name} missing from the renewed certificate: {names:?}");
    }
    assert_eq!(std::fs::read(&reg.ca_file).unwrap(), ca_before, "the CA clients trust changed");

    wait_for_serial(reg.port, &serial);
    wait_for_log(&reg, "certificate_reloaded");
    assert!(skopeo_pulls(&reg, &reg.cert_dir), "skopeo cannot pull after the renewal with the same CA file");

    // A name the CA may not vouch for is refused, and nothing changes.
    let (code, doc) = json(&["install", "--renew", "--san", "192.0.2.7"], &reg.root);
    assert_eq!(code, 2, "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.contains("192.0.2.7") && error.contains("--renew-ca"), "{error}");
    assert_eq!(served_serial(reg.port), serial);
    reg.stop();
}

#[test]
fn renewing_the_ca_overlaps_old_and_new_then_switches() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempdir();
    let mut reg = Registry::start();
    reg.push_image("app", "v1", &Image::new(2, &[1500]));
    let old_ca = std::fs::read(&reg.ca_file).unwrap();

    let doc = json_ok(&["install", "--renew-ca"], &reg.root);
    let bundle_path = reg.root.join("tls/ca-bundle.crt");
    assert_eq!(doc["trust_bundle"], bundle_path.display().to_string().as_str());
    let next = std::fs::read(reg.root.join("tls/ca-next.crt")).unwrap();
    let bundle = std::fs::read(&bundle_path).unwrap();
    assert_eq!(rustls_pemfile::certs(&mut &bundle[..]).count(), 2, "the bundle holds the old and the next CA");
    assert_eq!(std::fs::read(&reg.ca_file).unwrap(), old_ca, "the CA changed before the switch");
    let (code, doc) = json(&["install", "--renew-ca"], &reg.root);
    assert_eq!(code, 2, "a second next CA while one waits: {doc}");

    let with_bundle = cert_dir_with(tmp.path(), "bundle", &bundle);
    let with_old = cert_dir_with(tmp.path(), "old", &old_ca);
    let with_next = cert_dir_with(tmp.path(), "next", &next);
    assert!(skopeo_pulls(&reg, &with_bundle), "the bundle does not vouch for the current certificate");
    assert!(!skopeo_pulls(&reg, &with_next), "the next CA vouches before the switch");

    let doc = json_ok(&["install", "--renew", "--use-next-ca"], &reg.root);
    assert_eq!(doc["ca_switched"], true);
    wait_for_serial(reg.port, doc["certificate"]["serial"].as_str().unwrap());
    assert_eq!(std::fs::read(&reg.ca_file).unwrap(), next, "tls/ca.crt is the next CA after the switch");
    assert_eq!(std::fs::read(reg.root.join("tls/ca-previous.crt")).unwrap(), old_ca);
    assert!(!reg.root.join("tls/ca-next.crt").exists() && !reg.root.join("tls/ca-next.key").exists());
    assert!(skopeo_pulls(&reg, &with_bundle), "the bundle does not vouch after the switch");
    assert!(skopeo_pulls(&reg, &with_next), "the new CA does not vouch after the switch");
    assert!(!skopeo_pulls(&reg, &with_old), "the old CA still vouches after the switch");
    reg.stop();
}

/// A server certificate valid (almost) 10 days, issued by the root's CA (read back from its files).
fn issue_short_lived(root: &Path) {
    let ca_pem = std::fs::read_to_string(root.join("tls/ca.crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(root.join("tls/ca.key")).unwrap()).unwrap();
    let ca = rcgen::CertificateParams::from_ca_cert_pem(&ca_pem).unwrap().self_signed(&ca_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let now = std::time::SystemTime::now();
    leaf.not_before = (now - Duration::from_secs(3600)).into();
    // An hour short of 10 days: 9 whole days left, however soon serve looks.
    leaf.not_after = (now + Duration::from_secs(10 * 86_400 - 3600)).into();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(root.join("tls/server.key"), key.serialize_pem()).unwrap();
    std::fs::write(root.join("tls/server.crt"), cert.pem()).unwrap();
}

#[test]
fn a_certificate_near_expiry_is_warned_of_by_serve_and_status() {
    let mut reg = Registry::install();
    issue_short_lived(&reg.root);
    reg.serve(&[]);
    let log = wait_for_log(&reg, "expires in 9 days");
    let line = log.lines().find(|l| l.contains("expires in 9 days")).unwrap();
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["event"], "warning");
    assert_eq!(line["certificate"]["days_left"], 9);

    let doc = json_ok(&["status"], &reg.root);
    assert_eq!(doc["certificate"]["days_left"], 9);
    assert!(doc["warnings"][0].as_str().unwrap().contains("--renew"), "{doc}");
    let out = airlift().arg("status").arg("--root").arg(&reg.root).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: the certificate"));

    // Renewed: ten years again, picked up without a restart.
    let doc = json_ok(&["install", "--renew"], &reg.root);
    assert!(doc["certificate"]["days_left"].as_i64().unwrap() > 3000, "{doc}");
    wait_for_serial(reg.port, doc["certificate"]["serial"].as_str().unwrap());
    reg.stop();
}

#[test]
fn status_reports_url_certificates_contents_and_space() {
    let mut reg = Registry::start();
    let image = Image::new(3, &[1000, 3000]);
    reg.push_image("team/app", "v1", &image);
    reg.push_image("team/app", "latest", &image);
    let doc = json_ok(&["status"], &reg.root);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["url"], format!("https://localhost:{}", reg.port).as_str());
    assert!(doc["certificate"]["days_left"].as_i64().unwrap() > 3000);
    assert!(doc["ca"]["days_left"].as_i64().unwrap() > doc["certificate"]["days_left"].as_i64().unwrap());
    assert_eq!(doc["repositories"], 1);
    assert_eq!(doc["images"], 1);
    assert_eq!(doc["tags"], 2);
    let bytes: usize = image.blobs().iter().map(|b| b.len()).sum::<usize>() + image.manifest.len();
    assert_eq!(doc["bytes"], bytes);
    assert!(doc["free_bytes"].as_u64().unwrap() > 0);
    assert!(doc["last_unpack"].is_null());
    assert!(doc["warnings"].as_array().unwrap().is_empty());
    reg.stop();
}

#[test]
fn uninstall_keeps_the_storage_unless_asked_and_refuses_what_is_not_a_root() {
    let reg = Registry::install();
    let storage = reg.root.join("storage");
    std::fs::write(storage.join("marker"), b"images").unwrap();
    let doc = json_ok(&["uninstall"], &reg.root);
    assert_eq!(doc["kept"], storage.display().to_string().as_str());
    assert_eq!(doc["data_removed"], false);
    for gone in ["config.json", "tls", "htpasswd", "bin", "airlift-registry.service"] {
        assert!(!reg.root.join(gone).exists(), "{gone} is still there");
    }
    assert!(storage.join("marker").exists(), "the storage went without --data");
    let (code, _) = json(&["status"], &reg.root);
    assert_eq!(code, 2, "status of an uninstalled root");

    let reg = Registry::install();
    let doc = json_ok(&["uninstall", "--data"], &reg.root);
    assert_eq!(doc["data_removed"], true);
    assert!(!reg.root.exists(), "the root is still there after --data");

    let other = tempdir();
    std::fs::write(other.path().join("keep"), b"x").unwrap();
    let (code, _) = json(&["uninstall", "--data"], other.path());
    assert_eq!(code, 2);
    assert!(other.path().join("keep").exists());
}

#[test]
fn status_names_the_last_unpack_into_the_root() {
    let tmp = tempdir();
    let layout = crate::common::testdata("layout");
    let (bundle, public) = crate::common::pack_sources(tmp.path(), &[format!("oci:{}", layout.display())]);
    let root = tmp.path().join("root");
    let before = airlift::time::now();
    airlift()
        .arg("unpack")
        .arg(&bundle)
        .arg("--key")
        .arg(&public)
        .arg("--root")
        .arg(&root)
        .args(["--hostname", "localhost", "--no-start"])
        .assert()
        .success();
    let doc = json_ok(&["status"], &root);
    let last = &doc["last_unpack"];
    assert_eq!(last["unfinished"], 0, "{doc}");
    let finished = last["finished"].as_str().unwrap_or_else(|| panic!("no finished unpack: {doc}"));
    assert!(finished.ends_with('Z') && finished >= airlift::time::rfc3339(before).as_str(), "{finished}");
    assert!(doc["images"].as_u64().unwrap() > 0 && doc["tags"].as_u64().unwrap() > 0, "{doc}");
    assert!(doc["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn renewals_that_cannot_be_done_exit_2_and_say_why() {
    let reg = Registry::install();
    let cert = std::fs::read(reg.root.join("tls/server.crt")).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["install", "--san", "127.0.0.3"], "--renew"),
        (&["install", "--renew", "--use-next-ca"], "--renew-ca"),
        (&["install", "--renew", "--san", "bad_name!"], "invalid hostname"),
    ];
    for (args, says) in cases {
        let (code, doc) = json(args, &reg.root);
        assert_eq!(code, 2, "{args:?}: {doc}");
        assert!(doc["error"].as_str().unwrap().contains(says), "{args:?}: {doc}");
    }
    assert_eq!(
        std::fs::read(reg.root.join("tls/server.crt")).unwrap(),
        cert,
        "a refused renewal changed the certificate"
    );
    let other = tempdir();
    let (code, doc) = json(&["install", "--renew"], &other.path().join("none"));
    assert_eq!(code, 2);
    assert!(doc["error"].as_str().unwrap().contains("not an installed registry root"), "{doc}");
}
