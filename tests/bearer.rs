//! The bearer-token flow (issue 4, "Must show" 2): Debian's docker-registry (CNCF
//! distribution 2.8) with `auth: token`, trusting ES256 JWTs from an issuer the test runs
//! (tests/common/token.rs). skopeo pushes through it (push scope), airlift packs from it.

use std::time::Duration;

use crate::common::{testdata, testdata_digest};
use base64::Engine as _;

use crate::common::token::{SlowForwarder, TokenDistribution, DISTRIBUTION_LEEWAY, SERVICE};

fn push_testdata(reg: &TokenDistribution, pairs: &[(&str, &str)]) {
    let layout = testdata("layout");
    for (r, name) in pairs {
        reg.push(&format!("oci:{}:{r}", layout.display()), name);
    }
}

/// `airlift pack` from `reg` into DIR/bundle with DIR/auth.json holding `password`.
fn pack(
    reg: &TokenDistribution,
    dir: &std::path::Path,
    password: &str,
    sources: &[String],
) -> assert_cmd::assert::Assert {
    let (key, _) = crate::common::keygen(&dir.join("keys"), "site");
    crate::common::airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(dir.join("bundle"))
        .arg("--authfile")
        .arg(reg.authfile(&dir.join("auth"), &reg.user, password))
        .arg("--cert-dir")
        .arg(&reg.cert_dir)
        .arg("--cache")
        .arg(dir.join("cache"))
        .args(["--volume-size", "64KiB", "--chunk-size", "16KiB"])
        .args(sources)
        .timeout(Duration::from_secs(300))
        .assert()
}

/// verify exits 0 and the bundle lists the images in order with the source digests.
fn verify_and_check_digests(dir: &std::path::Path, sources: &[String], refs: &[&str]) {
    let bundle = dir.join("bundle");
    crate::common::airlift().arg("verify").arg(&bundle).arg("--key").arg(dir.join("keys/site.pub")).assert().code(0);
    let list = crate::common::airlift().arg("list").arg(&bundle).arg("--json").assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&list.get_output().stdout).unwrap();
    assert_eq!(doc["images"].as_array().map(Vec::len), Some(refs.len()), "{doc}");
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(doc["images"][i]["digest"], testdata_digest(r).as_str(), "{r}: {doc}");
        assert_eq!(doc["images"][i]["source"], sources[i].as_str());
    }
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn bearer_tokens_from_the_issuer_let_skopeo_push_and_airlift_pack() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start() else { return };
    push_testdata(&reg, &[("app-00", "ns/app:1"), ("multi", "ns/multi:1")]);
    // skopeo got its push tokens from our issuer: the registry enforces token auth.
    let seen = reg.issuer.seen();
    assert!(
        seen.iter().any(|s| s.granted && s.scopes.iter().any(|sc| sc == "repository:ns/app:pull,push")),
        "skopeo never asked for a push token: {seen:#?}\nregistry log:\n{}",
        reg.log()
    );
    reg.issuer.forget();

    let tmp = crate::common::tempdir();
    let sources = vec![reg.docker_ref("ns/app:1"), reg.docker_ref("ns/multi:1")];
    let a = pack(&reg, tmp.path(), &reg.password, &sources);
    if a.get_output().status.code() != Some(0) {
        panic!("pack failed: {}\nissuer saw: {:#?}\nregistry log:\n{}", stderr_of(&a), reg.issuer.seen(), reg.log());
    }
    verify_and_check_digests(tmp.path(), &sources, &["app-00", "multi"]);

    // airlift asked the issuer, with the credentials of the auth file, for the pull scope
    // of each repository, naming the registry's service.
    let seen = reg.issuer.seen();
    for repo in ["ns/app", "ns/multi"] {
        let scope = format!("repository:{repo}:pull");
        assert!(seen.iter().any(|s| s.granted && s.scopes.contains(&scope)), "no token for {scope}: {seen:#?}");
    }
    assert!(seen.iter().all(|s| s.user.as_deref() == Some(reg.user.as_str())), "{seen:#?}");
    assert!(seen.iter().all(|s| s.service.as_deref() == Some(SERVICE)), "{seen:#?}");
    // Tokens are reused: not one token request per registry request.
    assert!(seen.len() <= 4, "a token per request? {} token requests: {seen:#?}", seen.len());
}

#[test]
fn an_expired_bearer_token_is_refreshed_during_a_pack() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start() else { return };
    push_testdata(&reg, &[("app-00", "ns/a:1"), ("app-01", "ns/b:1")]);
    // From now on tokens are good for 2 s at the registry: distribution accepts a token up
    // to DISTRIBUTION_LEEWAY seconds after its `exp`.
    const LIFE: i64 = 2;
    reg.issuer.set_policy(|p| {
        p.exp_offset = LIFE - DISTRIBUTION_LEEWAY;
        p.expires_in = LIFE as u64;
        // The token for ns/b comes only after ns/a's token has expired. airlift resolves
        // every image (manifests) before fetching blobs, so ns/a's blobs are then fetched
        // with an expired token: the registry answers 401 invalid_token and airlift must
        // get a new one.
        p.delay = Some(("repository:ns/b:".into(), Duration::from_secs(LIFE as u64 + 2)));
    });
    reg.issuer.forget();

    let tmp = crate::common::tempdir();
    let sources = vec![reg.docker_ref("ns/a:1"), reg.docker_ref("ns/b:1")];
    let a = pack(&reg, tmp.path(), &reg.password, &sources);
    let seen = reg.issuer.seen();
    if a.get_output().status.code() != Some(0) {
        panic!("pack failed: {}\nissuer saw: {seen:#?}\nregistry log:\n{}", stderr_of(&a), reg.log());
    }
    verify_and_check_digests(tmp.path(), &sources, &["app-00", "app-01"]);

    let for_a: Vec<_> =
        seen.iter().filter(|s| s.granted && s.scopes.iter().any(|sc| sc == "repository:ns/a:pull")).collect();
    assert!(for_a.len() >= 2, "the expired ns/a token was not refreshed: {seen:#?}");
    // `exp` is whole seconds, so a token lives between LIFE - 1 and LIFE seconds.
    let gap = for_a[for_a.len() - 1].at.duration_since(for_a[0].at);
    assert!(gap >= Duration::from_secs(LIFE as u64 - 1), "second ns/a token after {gap:?}: {seen:#?}");
    // Workers refused at the same moment share one new token: a token is asked for again
    // only once the last one has expired.
    for pair in for_a.windows(2) {
        let between = pair[1].at.duration_since(pair[0].at);
        assert!(between >= Duration::from_secs(LIFE as u64 - 1), "ns/a tokens {between:?} apart: {seen:#?}");
    }
    // The registry did refuse the expired token (it logs why at level info).
    assert!(reg.log().contains("token not to be used after"), "registry log:\n{}", reg.log());
}

#[test]
fn a_password_the_issuer_refuses_exits_2_naming_the_registry() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start() else { return };
    push_testdata(&reg, &[("app-00", "ns/app:1")]);
    reg.issuer.forget();
    let tmp = crate::common::tempdir();
    let a = pack(&reg, tmp.path(), "not-the-password", &[reg.docker_ref("ns/app:1")]).code(2);
    let err = stderr_of(&a);
    assert!(err.contains(&reg.host()), "the registry is not named: {err}");
    assert!(err.contains("ns/app"), "the image is not named: {err}");
    let lower = err.to_lowercase();
    assert!(lower.contains("rejected") && lower.contains(&reg.user), "{err}");
    let seen = reg.issuer.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| !s.granted), "{seen:#?}");
    // A refusal is final: not retried as if it were transient.
    assert!(seen.len() <= 2, "{} token requests for a refused password: {seen:#?}", seen.len());
    assert!(!tmp.path().join("bundle/airlift.manifest.json").exists());
}

#[test]
fn unpack_to_pushes_through_bearer_tokens_with_push_scope() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start() else { return };
    push_testdata(&reg, &[("app-00", "ns/app:1"), ("multi", "ns/multi:1")]);
    let tmp = crate::common::tempdir();
    let sources = vec![reg.docker_ref("ns/app:1"), reg.docker_ref("ns/multi:1")];
    let a = pack(&reg, tmp.path(), &reg.password, &sources);
    assert_eq!(a.get_output().status.code(), Some(0), "pack: {}", stderr_of(&a));
    reg.issuer.forget();
    let a = crate::common::airlift()
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .arg("--to")
        .arg(reg.docker_ref("mirror"))
        .arg("--authfile")
        .arg(tmp.path().join("auth/auth.json"))
        .arg("--cert-dir")
        .arg(&reg.cert_dir)
        .arg("--cache")
        .arg(tmp.path().join("push-cache"))
        .arg("--results")
        .arg(tmp.path().join("results"))
        .timeout(Duration::from_secs(300))
        .assert();
    let seen = reg.issuer.seen();
    if a.get_output().status.code() != Some(0) {
        panic!("unpack --to failed: {}\nissuer saw: {seen:#?}\nregistry log:\n{}", stderr_of(&a), reg.log());
    }
    // quay.io/ns/app:1 → HOST/PREFIX/ns/app:1: same digests as the source.
    assert_eq!(reg.digest("mirror/ns/app:1"), testdata_digest("app-00"));
    assert_eq!(reg.digest("mirror/ns/multi:1"), testdata_digest("multi"));
    for repo in ["mirror/ns/app", "mirror/ns/multi"] {
        assert!(
            seen.iter().any(|s| s.granted
                && s.scopes.iter().any(|sc| sc.starts_with(&format!("repository:{repo}:")) && sc.contains("push"))),
            "no push token for {repo}: {seen:#?}"
        );
    }
}

#[test]
fn a_plain_http_token_service_gets_credentials_only_with_tls_verify_false() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start_with(false) else { return };
    assert!(reg.issuer.realm().starts_with("http://"));
    // skopeo has no such guard: it sends the credentials to the plain-HTTP realm.
    push_testdata(&reg, &[("app-00", "ns/app:1")]);
    reg.issuer.forget();
    let tmp = crate::common::tempdir();
    let source = vec![reg.docker_ref("ns/app:1")];
    let a = pack(&reg, tmp.path(), &reg.password, &source).code(2);
    let err = stderr_of(&a);
    assert!(err.contains("not HTTPS") && err.contains("--tls-verify=false") && err.contains(&reg.host()), "{err}");
    let seen = reg.issuer.seen();
    assert!(seen.is_empty(), "credentials went to the plain-HTTP token service: {seen:#?}");
    // Asked for, it works.
    let ok = tmp.path().join("insecure");
    let (key, _) = crate::common::keygen(&ok.join("keys"), "site");
    let a = crate::common::airlift()
        .args(["pack", "--no-installer", "--tls-verify=false", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(ok.join("bundle"))
        .arg("--authfile")
        .arg(reg.authfile(&ok.join("auth"), &reg.user, &reg.password))
        .arg("--cache")
        .arg(ok.join("cache"))
        .args(&source)
        .timeout(Duration::from_secs(300))
        .assert();
    assert_eq!(a.get_output().status.code(), Some(0), "{}", stderr_of(&a));
    verify_and_check_digests(&ok, &source, &["app-00"]);
    assert!(reg.issuer.seen().iter().any(|s| s.granted), "{:#?}", reg.issuer.seen());
}

#[test]
fn unpack_to_refreshes_tokens_that_expire_during_the_push() {
    if !crate::common::have("skopeo") {
        return;
    }
    let Some(reg) = TokenDistribution::start() else { return };
    push_testdata(&reg, &[("app-00", "ns/app:1"), ("multi", "ns/multi:1")]);
    let tmp = crate::common::tempdir();
    let sources = vec![reg.docker_ref("ns/app:1"), reg.docker_ref("ns/multi:1")];
    let a = pack(&reg, tmp.path(), &reg.password, &sources);
    assert_eq!(a.get_output().status.code(), Some(0), "pack: {}", stderr_of(&a));
    // Tokens now live 1-2 s at the registry (`exp` is whole seconds), and every request
    // to the registry takes at least 150 ms (the forwarder holds what the client sends):
    // any request of the push (HEAD, POST, PATCH, PUT of a blob upload, manifest PUTs)
    // may meet a 401 invalid_token part way and must be sent again with a new token.
    const LIFE: i64 = 2;
    reg.issuer.set_policy(|p| {
        p.exp_offset = LIFE - DISTRIBUTION_LEEWAY;
        p.expires_in = LIFE as u64;
    });
    reg.issuer.forget();
    let slow = SlowForwarder::start(reg.port, Duration::from_millis(150));
    let slow_host = format!("localhost:{}", slow.port);
    let auth = tmp.path().join("slow-auth");
    std::fs::create_dir_all(&auth).unwrap();
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", reg.user, reg.password));
    std::fs::write(auth.join("auth.json"), serde_json::json!({"auths": {&slow_host: {"auth": creds}}}).to_string())
        .unwrap();
    let started = std::time::Instant::now();
    let a = crate::common::airlift()
        .arg("unpack")
        .arg(tmp.path().join("bundle"))
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .arg("--to")
        .arg(format!("docker://{slow_host}/mirror"))
        .arg("--authfile")
        .arg(auth.join("auth.json"))
        .arg("--cert-dir")
        .arg(&reg.cert_dir)
        .arg("--cache")
        .arg(tmp.path().join("push-cache"))
        .arg("--results")
        .arg(tmp.path().join("results"))
        .args(["--upload-chunk", "4KiB"])
        .timeout(Duration::from_secs(300))
        .assert();
    let took = started.elapsed();
    let seen = reg.issuer.seen();
    if a.get_output().status.code() != Some(0) {
        panic!("unpack --to failed: {}\nissuer saw: {seen:#?}\nregistry log:\n{}", stderr_of(&a), reg.log());
    }
    reg.issuer.set_policy(|p| p.exp_offset = 300);
    assert_eq!(reg.digest("mirror/ns/app:1"), testdata_digest("app-00"));
    assert_eq!(reg.digest("mirror/ns/multi:1"), testdata_digest("multi"));
    let mut scopes: Vec<String> = seen.iter().map(|s| s.scopes.join(" ")).collect();
    let total = scopes.len();
    scopes.sort();
    scopes.dedup();
    assert!(total > scopes.len(), "no scope was asked for twice in {took:?} (no token was refreshed): {seen:#?}");
    assert!(reg.log().contains("token not to be used after"), "the registry never saw an expired token");
}
