//! `airlift user` against a running `airlift serve` (issue 14, must-show 4's user half):
//! a user added while the server runs pulls within a second, a removed one is refused, a
//! read-only user pulls but cannot push, `passwd` retires the old password, `install
//! --password-file` sets the initial one, and concurrent edits all land. Changes are
//! awaited by polling with a deadline, never by sleeping.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::registry::Registry;
use crate::common::{self, airlift, airlift_path, run_ok, tempdir};

/// What "within a second" is measured against.
const WITHIN: Duration = Duration::from_secs(1);

/// `airlift user ARGS --root ROOT --json`: exit code and document.
fn user(root: &Path, args: &[&str]) -> (i32, Value) {
    let out = airlift().arg("user").args(args).arg("--root").arg(root).arg("--json").output().unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("user {args:?}: no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

/// The status `GET /v2/` answers `user:password`.
fn login(reg: &Registry, user: &str, password: &str) -> u16 {
    reg.anon(Method::GET, "/v2/").basic_auth(user, Some(password)).send().unwrap().status().as_u16()
}

/// Poll `login` until it answers `want`; how long that took (panics after the deadline).
fn until_login(reg: &Registry, user: &str, password: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let got = login(reg, user, password);
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < WITHIN, "{user} still gets {got}, not {want}, after {:?}", start.elapsed());
    }
}

fn skopeo_creds(reg: &Registry, flag: &str, cert_flag: &str, user: &str, password: &str) -> Vec<String> {
    vec![cert_flag.into(), reg.cert_dir.display().to_string(), flag.into(), format!("{user}:{password}")]
}

/// A served registry holding testdata's `app-00` as `testdata/app:app-00` (pushed by the
/// installer's user with skopeo); None when skopeo is missing.
fn serving_testdata() -> Option<Registry> {
    if !common::have("skopeo") {
        return None;
    }
    let reg = Registry::start();
    let mut cmd = reg.skopeo("copy");
    cmd.args(reg.skopeo_dest_args());
    cmd.arg(format!("oci:{}:app-00", common::testdata("layout").display())).arg(reg.docker_ref("testdata/app:app-00"));
    run_ok(&mut cmd);
    Some(reg)
}

#[test]
fn a_user_added_while_serving_pulls_within_a_second_and_a_removed_one_is_refused() {
    let Some(reg) = serving_testdata() else { return };
    let dir = tempdir();
    assert_eq!(login(&reg, "bob", "bob-password-1"), 401);

    let file = password_file(dir.path(), "bob.pw", "bob-password-1");
    let (code, doc) = user(&reg.root, &["add", "bob", "--password-file", &file]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!((doc["user"].as_str(), doc["role"].as_str()), (Some("bob"), Some("read-write")), "{doc}");
    assert!(doc.get("password").is_none(), "a chosen password is never printed back: {doc}");
    let took = until_login(&reg, "bob", "bob-password-1", 200);
    eprintln!("bob logs in {took:?} after `user add` returned");
    let mut cmd = reg.skopeo("inspect");
    cmd.args(skopeo_creds(&reg, "--creds", "--cert-dir", "bob", "bob-password-1"));
    let info: Value = serde_json::from_str(&run_ok(cmd.arg(reg.docker_ref("testdata/app:app-00")))).unwrap();
    assert!(info["Digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{info}");

    let (code, doc) = user(&reg.root, &["remove", "bob"]);
    assert_eq!(code, 0, "{doc}");
    let took = until_login(&reg, "bob", "bob-password-1", 401);
    eprintln!("bob is refused {took:?} after `user remove` returned");
    let mut cmd = reg.skopeo("inspect");
    cmd.args(skopeo_creds(&reg, "--creds", "--cert-dir", "bob", "bob-password-1"));
    let out = cmd.arg(reg.docker_ref("testdata/app:app-00")).output().unwrap();
    assert!(!out.status.success(), "a removed user still pulls");
    // The server said so in its log.
    assert!(reg.log().contains("\"users_reloaded\""), "{}", reg.log());
}

#[test]
fn a_read_only_user_pulls_but_cannot_push() {
    let Some(reg) = serving_testdata() else { return };
    let dir = tempdir();
    let (code, doc) = user(&reg.root, &["add", "reader", "--read-only"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["role"], "read-only", "{doc}");
    let password = doc["password"].as_str().unwrap_or_else(|| panic!("a generated password is shown: {doc}"));
    until_login(&reg, "reader", password, 200);

    // Pull: copy the image out.
    let mut cmd = reg.skopeo("copy");
    cmd.args(skopeo_creds(&reg, "--src-creds", "--src-cert-dir", "reader", password));
    let out = dir.path().join("pulled");
    run_ok(cmd.arg(reg.docker_ref("testdata/app:app-00")).arg(format!("oci:{}:app", out.display())));

    // Push: refused, with an authorization error.
    let mut cmd = reg.skopeo("copy");
    cmd.args(skopeo_creds(&reg, "--dest-creds", "--dest-cert-dir", "reader", password));
    let pushed = cmd.arg(format!("oci:{}:app", out.display())).arg(reg.docker_ref("reader/app:1")).output().unwrap();
    let stderr = String::from_utf8_lossy(&pushed.stderr).to_lowercase();
    assert!(!pushed.status.success(), "a read-only user pushed");
    assert!(stderr.contains("denied") || stderr.contains("403"), "{stderr}");

    // The API: a blob upload POST is 403 DENIED in the OCI envelope.
    let r =
        reg.anon(Method::POST, "/v2/reader/app/blobs/uploads/").basic_auth("reader", Some(password)).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let listed = user(&reg.root, &["list"]).1;
    let roles: Vec<(&str, &str)> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("tester", "read-write"), ("reader", "read-only")], "{listed}");
}

#[test]
fn passwd_retires_the_old_password() {
    let dir = tempdir();
    let reg = Registry::start();
    let file = password_file(dir.path(), "new.pw", "a-new-password");
    let (code, doc) = user(&reg.root, &["passwd", &reg.user, "--password-file", &file]);
    assert_eq!(code, 0, "{doc}");
    until_login(&reg, &reg.user, "a-new-password", 200);
    assert_eq!(login(&reg, &reg.user, &reg.password), 401, "the old password still logs in");
    // Without a file and without a terminal, a new password is generated and shown once.
    let (code, doc) = user(&reg.root, &["passwd", &reg.user]);
    assert_eq!(code, 0, "{doc}");
    until_login(&reg, &reg.user, doc["password"].as_str().unwrap(), 200);
}

#[test]
fn install_password_file_sets_the_initial_password_and_never_prints_it() {
    let dir = tempdir();
    let short = password_file(dir.path(), "short.pw", "seven77");
    let root = dir.path().join("root");
    let port = crate::common::registry::free_port().to_string();
    let install = |file: &str| {
        Command::new(airlift_path())
            .args(["install", "--root"])
            .arg(&root)
            .args(["--hostname", "localhost", "--port", &port, "--no-start", "--password-file", file])
            .output()
            .unwrap()
    };
    let out = install(&short);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("short.pw") && stderr.contains("shorter than 8"), "{stderr}");
    assert!(!root.join("config.json").exists(), "a refused password file installs nothing");

    let chosen = "the chosen init password";
    let out = install(&password_file(dir.path(), "init.pw", chosen));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(chosen) && !stderr.contains(chosen), "the password was printed back: {stdout}");
    assert!(stdout.contains("password of --password-file"), "{stdout}");
    let mut reg = Registry::adopt(&root, "init", chosen, &root.join("tls/ca.crt"));
    reg.serve(&[]);
    assert_eq!(login(&reg, "init", chosen), 200);

    // On an installed root it is ignored (said so); with --reset-password it is the new one.
    let out = install(&short);
    assert_eq!(out.status.code(), Some(2), "a bad file is refused before anything else");
    let again = password_file(dir.path(), "again.pw", "another chosen one");
    let out = install(&again);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("ignored --password-file"), "{stderr}");
    assert_eq!(login(&reg, "init", chosen), 200);
    let out = airlift()
        .args(["install", "--root"])
        .arg(&root)
        .args(["--reset-password", "--password-file", &again, "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((doc["password_reset"].as_bool(), doc["password_chosen"].as_bool()), (Some(true), Some(true)), "{doc}");
    assert!(doc.get("password").is_none() && doc.get("pull_secret").is_none(), "{doc}");
    until_login(&reg, "init", "another chosen one", 200);
}

#[test]
fn concurrent_user_adds_all_land_and_the_last_writer_stays() {
    let dir = tempdir();
    let reg = Registry::install();
    let file = password_file(dir.path(), "pw", "shared-password");
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(airlift_path())
                .args(["user", "add", &format!("user{i}"), "--read-only", "--password-file", &file, "--root"])
                .arg(&reg.root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (_, doc) = user(&reg.root, &["list"]);
    assert_eq!(doc["users"].as_array().unwrap().len(), 9, "{doc}");

    // The installer's user is the only writer: not removed without --force.
    let (code, doc) = user(&reg.root, &["remove", &reg.user]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["status"], "error");
    assert!(doc["error"].as_str().unwrap().contains("last read-write user"), "{doc}");
    let (code, doc) = user(&reg.root, &["add", "bad:name"]);
    assert_eq!(code, 2, "{doc}");
}
