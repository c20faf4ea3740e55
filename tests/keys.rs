//! `airlift keygen` and key interoperability with Debian's stock minisign.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use airlift::minisign::{PublicKey, SecretKey};

use crate::common;

/// Run minisign with `stdin` as its standard input (how it reads passwords off a terminal).
fn minisign(args: &[&std::ffi::OsStr], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("minisign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run minisign");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write minisign's stdin");
    child.wait_with_output().expect("wait for minisign")
}

fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// `minisign -S` then `minisign -V` of a file with the given key pair; returns what -V printed.
fn minisign_sign_and_verify(dir: &Path, key: &Path, public: &Path, password: &[u8]) -> String {
    let data = dir.join("payload.txt");
    std::fs::write(&data, b"signed by stock minisign with an airlift key\n").unwrap();
    let sig = dir.join("payload.txt.minisig");
    let out = minisign(
        &[
            "-S".as_ref(),
            "-s".as_ref(),
            key.as_os_str(),
            "-m".as_ref(),
            data.as_os_str(),
            "-x".as_ref(),
            sig.as_os_str(),
            "-t".as_ref(),
            "interop check".as_ref(),
        ],
        password,
    );
    assert_success(&out, "minisign -S");
    let out = minisign(
        &[
            "-V".as_ref(),
            "-p".as_ref(),
            public.as_os_str(),
            "-m".as_ref(),
            data.as_os_str(),
            "-x".as_ref(),
            sig.as_os_str(),
        ],
        b"",
    );
    assert_success(&out, "minisign -V");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keygen_writes_a_key_pair_that_stock_minisign_signs_and_verifies_with() {
    let tmp = common::tempdir();
    // The output directory does not exist yet: keygen creates it.
    let dir = tmp.path().join("keys/nested");
    let out = common::airlift().args(["keygen", "--out"]).arg(&dir).args(["--name", "gate"]).output().unwrap();
    assert!(out.status.success(), "keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    let (key, public) = (dir.join("gate.key"), dir.join("gate.pub"));
    assert_eq!(mode(&key), 0o600, "the secret key must be readable by its owner only");
    assert!(!SecretKey::is_encrypted_file(&key).unwrap());
    let pk = PublicKey::from_file(&public).unwrap();
    assert_eq!(SecretKey::from_file(&key, None).unwrap().public_key(), pk);

    // The key id and both paths are printed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("key id:     {}", pk.key_id_hex())), "{stdout}");
    assert!(stdout.contains(&key.display().to_string()), "{stdout}");
    assert!(stdout.contains(&public.display().to_string()), "{stdout}");
    let pub_text = std::fs::read_to_string(&public).unwrap();
    assert!(pub_text.starts_with(&format!("untrusted comment: minisign public key {}\n", pk.key_id_hex())));
    // No temporary files are left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["gate.key", "gate.pub"]);

    if !common::have("minisign") {
        return;
    }
    // An unencrypted key: minisign must not ask for a password (stdin is empty, so a prompt
    // would read end of file and fail).
    let verified = minisign_sign_and_verify(tmp.path(), &key, &public, b"");
    assert!(verified.contains("Trusted comment: interop check"), "{verified}");
}

#[test]
fn keygen_refuses_to_overwrite_a_key_pair_without_force() {
    let tmp = common::tempdir();
    let dir = tmp.path();
    common::airlift().args(["keygen", "--out"]).arg(dir).assert().success();
    // The default name is "airlift".
    let (key, public) = (dir.join("airlift.key"), dir.join("airlift.pub"));
    let key_before = std::fs::read(&key).unwrap();
    let pub_before = std::fs::read(&public).unwrap();

    let out = common::airlift().args(["keygen", "--out"]).arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
    assert_eq!(std::fs::read(&public).unwrap(), pub_before);

    // Only one of the two present is enough to refuse, and nothing is written.
    std::fs::remove_file(&key).unwrap();
    let out = common::airlift().args(["keygen", "--out"]).arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!key.exists(), "keygen wrote a secret key although it refused");
    assert_eq!(std::fs::read(&public).unwrap(), pub_before);

    // --force replaces the pair with a new, matching one.
    std::fs::write(&key, &key_before).unwrap();
    common::airlift().args(["keygen", "--force", "--out"]).arg(dir).assert().success();
    assert_ne!(std::fs::read(&key).unwrap(), key_before);
    assert_ne!(std::fs::read(&public).unwrap(), pub_before);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(SecretKey::from_file(&key, None).unwrap().public_key(), PublicKey::from_file(&public).unwrap());
}

#[test]
fn keygen_json_reports_the_key_id_and_paths() {
    let tmp = common::tempdir();
    let out = common::airlift().args(["--json", "keygen", "--name", "ci", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    let pk = PublicKey::from_file(&tmp.path().join("ci.pub")).unwrap();
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["key_id"], pk.key_id_hex());
    assert_eq!(doc["secret_key"], tmp.path().join("ci.key").to_str().unwrap());
    assert_eq!(doc["public_key"], tmp.path().join("ci.pub").to_str().unwrap());
    assert_eq!(doc["encrypted"], false);

    // A refusal is one JSON error document too, with exit code 2.
    let out = common::airlift().args(["--json", "keygen", "--name", "ci", "--out"]).arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["status"], "error");
    assert!(doc["error"].as_str().unwrap().contains("already exists"), "{doc}");
}

#[test]
fn keygen_password_file_encrypts_the_key_for_stock_minisign() {
    let tmp = common::tempdir();
    let password_file = tmp.path().join("password");
    std::fs::write(&password_file, "correct horse battery staple\n").unwrap();
    let dir = tmp.path().join("keys");
    let out = common::airlift()
        .args(["--json", "keygen", "--out"])
        .arg(&dir)
        .arg("--password-file")
        .arg(&password_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["encrypted"], true);
    let (key, public) = (dir.join("airlift.key"), dir.join("airlift.pub"));
    assert_eq!(mode(&key), 0o600);
    assert!(SecretKey::is_encrypted_file(&key).unwrap());
    let err = SecretKey::from_file(&key, Some(b"correct horse battery stapler")).unwrap_err();
    assert!(err.to_string().contains("wrong password"), "{err}");

    if !common::have("minisign") {
        return;
    }
    // Stock minisign decrypts it with the password (read from stdin when it is not a
    // terminal): the scrypt parameters and checksum match libsodium's.
    let verified = minisign_sign_and_verify(tmp.path(), &key, &public, b"correct horse battery staple\n");
    assert!(verified.contains("Trusted comment: interop check"), "{verified}");
    // And refuses a wrong one.
    let data = tmp.path().join("other.txt");
    std::fs::write(&data, b"x").unwrap();
    let out = minisign(&["-S".as_ref(), "-s".as_ref(), key.as_os_str(), "-m".as_ref(), data.as_os_str()], b"wrong\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Wrong password"), "{out:?}");
}

#[test]
fn keygen_rejects_unusable_password_files_and_names() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("keys");

    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out =
        common::airlift().args(["keygen", "--out"]).arg(&dir).arg("--password-file").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is empty"), "{out:?}");

    let missing = tmp.path().join("no-such-file");
    let out =
        common::airlift().args(["keygen", "--out"]).arg(&dir).arg("--password-file").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file"), "{out:?}");

    for name in ["../escape", "", ".."] {
        let out = common::airlift().args(["keygen", "--name", name, "--out"]).arg(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "name {name:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid key name"), "{out:?}");
    }
    // Nothing was written anywhere.
    assert!(!dir.exists(), "keygen created {} although it failed", dir.display());
    assert!(!tmp.path().join("escape.key").exists());
}

#[test]
fn keys_made_by_stock_minisign_are_accepted() {
    if !common::have("minisign") {
        return;
    }
    let tmp = common::tempdir();
    let (key, public) = (tmp.path().join("m.key"), tmp.path().join("m.pub"));
    let out = minisign(
        &["-G".as_ref(), "-W".as_ref(), "-p".as_ref(), public.as_os_str(), "-s".as_ref(), key.as_os_str()],
        b"",
    );
    assert_success(&out, "minisign -G -W");
    let sk = SecretKey::from_file(&key, None).unwrap();
    let pk = PublicKey::from_file(&public).unwrap();
    assert_eq!(sk.public_key(), pk);
    // What airlift signs with minisign's key, minisign verifies with minisign's public key.
    let data = tmp.path().join("manifest.json");
    std::fs::write(&data, b"{}\n").unwrap();
    std::fs::write(tmp.path().join("manifest.json.minisig"), sk.sign(b"{}\n", "airlift", "bundle:test")).unwrap();
    let out = minisign(
        &[
            "-V".as_ref(),
            "-H".as_ref(),
            "-Q".as_ref(),
            "-p".as_ref(),
            public.as_os_str(),
            "-m".as_ref(),
            data.as_os_str(),
        ],
        b"",
    );
    assert_success(&out, "minisign -V");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bundle:test\n");
}
