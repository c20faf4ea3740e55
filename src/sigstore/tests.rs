//! The verifier against the vectors of testdata/sigstore/ (made by make-vectors.py).

use std::path::{Path, PathBuf};

use super::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sigstore")
}

fn key(name: &str) -> PublicKey {
    let path = dir().join(name);
    PublicKey::from_pem(&std::fs::read(&path).unwrap(), &path.display().to_string()).unwrap()
}

fn subject() -> Digest {
    std::fs::read_to_string(dir().join("subject.txt")).unwrap().trim().parse().unwrap()
}

/// Verify the vector in `vector` as the caller would: blobs read by digest from its directory.
fn check(vector: &str, subject: &Digest, keys: &[PublicKey], rekor: Option<&PublicKey>) -> Verdict {
    let vector = dir().join(vector);
    let manifest = std::fs::read(vector.join("manifest.json")).unwrap();
    let blob = |d: &Digest| std::fs::read(vector.join("blobs/sha256").join(d.hex())).ok();
    verify(&manifest, &blob, subject, keys, rekor)
}

fn bad(verdict: Verdict) -> String {
    match verdict {
        Verdict::Bad(why) => why,
        other => panic!("expected Bad, got {other:?}"),
    }
}

#[test]
fn a_good_signature_verifies_naming_the_key() {
    let test = key("test-key.pub");
    let verdict = check("good", &subject(), &[key("other-key.pub"), test.clone()], None);
    assert_eq!(verdict, Verdict::Signed { key: test.id() });
    assert!(test.id().starts_with("SHA256:") && test.id().len() == 23, "{}", test.id());
}

#[test]
fn without_keys_a_sound_signature_is_signed_but_unverified() {
    assert_eq!(check("good", &subject(), &[], None), Verdict::Signed { key: UNVERIFIED.to_string() });
    // Structure is still checked without keys.
    assert!(bad(check("digest-mismatch", &subject(), &[], None)).contains("digest"));
}

#[test]
fn a_signature_no_given_key_verifies_is_bad() {
    let other = key("other-key.pub");
    let why = bad(check("good", &subject(), std::slice::from_ref(&other), None));
    assert!(why.contains("does not verify with any given key") && why.contains(&other.id()), "{why}");
}

#[test]
fn tampered_payload_signature_and_digest_are_bad_naming_why() {
    let keys = [key("test-key.pub")];
    let why = bad(check("tampered-payload", &subject(), &keys, None));
    assert!(why.contains("does not verify"), "{why}");
    let why = bad(check("tampered-signature", &subject(), &keys, None));
    assert!(why.contains("does not verify"), "{why}");
    let why = bad(check("digest-mismatch", &subject(), &keys, None));
    assert!(why.contains("the payload's digest is sha256:") && why.contains("not the descriptor's"), "{why}");
}

#[test]
fn a_signature_for_another_subject_is_bad() {
    let other = Digest::of(b"another image");
    let why = bad(check("good", &other, &[key("test-key.pub")], None));
    assert!(why.contains(&format!("not {other}")) && why.contains(&subject().to_string()), "{why}");
}

#[test]
fn a_manifest_without_signatures_is_unsigned_and_garbage_is_bad() {
    let blob = |_: &Digest| None;
    let empty = br#"{"schemaVersion":2,"layers":[{"digest":"sha256:00","annotations":{}}]}"#;
    assert_eq!(verify(empty, &blob, &subject(), &[key("test-key.pub")], None), Verdict::Unsigned);
    let why = bad(verify(b"\x1b[2Jnot json", &blob, &subject(), &[], None));
    assert!(why.contains("not an OCI manifest"), "{why}");
}

#[test]
fn a_missing_payload_blob_is_bad() {
    let manifest = std::fs::read(dir().join("good/manifest.json")).unwrap();
    let why = bad(verify(&manifest, &|_| None, &subject(), &[key("test-key.pub")], None));
    assert!(why.contains("payload blob is missing"), "{why}");
}

#[test]
fn a_rekor_bundle_is_checked_with_the_rekor_key_or_reported_unchecked() {
    let (test, rekor) = (key("test-key.pub"), key("rekor-key.pub"));
    let keys = std::slice::from_ref(&test);
    let verdict = check("good-rekor", &subject(), keys, Some(&rekor));
    assert_eq!(verdict, Verdict::Signed { key: format!("{}; rekor entry 4242 verified", test.id()) });
    let verdict = check("good-rekor", &subject(), keys, None);
    assert_eq!(
        verdict,
        Verdict::Signed { key: format!("{}; rekor bundle not checked (no Rekor key given)", test.id()) }
    );
    // An entry changed after the log signed it.
    let why = bad(check("bad-rekor", &subject(), keys, Some(&rekor)));
    assert!(why.contains("the Rekor SignedEntryTimestamp does not verify with the Rekor key"), "{why}");
    // A bundle from another log than the given key's.
    let other = key("other-key.pub");
    let why = bad(check("good-rekor", &subject(), keys, Some(&other)));
    assert!(why.contains(&format!("not the given Rekor key's ({})", other.id())), "{why}");
}

#[test]
fn a_rekor_entry_must_record_this_payload_and_signature() {
    let manifest = std::fs::read_to_string(dir().join("good-rekor/manifest.json")).unwrap();
    let good = std::fs::read_to_string(dir().join("good/manifest.json")).unwrap();
    // Graft good-rekor's bundle (over its own signature) onto good's layer: the SET holds,
    // the entry names another signature.
    let bundle: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let bundle = bundle["layers"][0]["annotations"][BUNDLE_ANNOTATION].as_str().unwrap().to_string();
    let mut grafted: serde_json::Value = serde_json::from_str(&good).unwrap();
    grafted["layers"][0]["annotations"][BUNDLE_ANNOTATION] = bundle.into();
    let blob = |d: &Digest| std::fs::read(dir().join("good/blobs/sha256").join(d.hex())).ok();
    let bytes = serde_json::to_vec(&grafted).unwrap();
    let why = bad(verify(&bytes, &blob, &subject(), &[key("test-key.pub")], Some(&key("rekor-key.pub"))));
    assert!(why.contains("the Rekor entry records another signature"), "{why}");
    // A logged entry that records another public key than the one that verified.
    let test = key("test-key.pub");
    let why = bad(check("rekor-other-key", &subject(), std::slice::from_ref(&test), Some(&key("rekor-key.pub"))));
    assert!(why.contains(&format!("the Rekor entry records another public key than {}", test.id())), "{why}");
    // Without keys the entry's key is not compared (nothing verified who signed).
    let verdict = check("rekor-other-key", &subject(), &[], Some(&key("rekor-key.pub")));
    assert_eq!(verdict, Verdict::Signed { key: format!("{UNVERIFIED}; rekor entry 4242 verified") });
}

#[test]
fn pem_errors_name_the_file_and_what_is_wrong() {
    let err = |bytes: &[u8]| PublicKey::from_pem(bytes, "keys/k.pub").unwrap_err().to_string();
    let private = std::fs::read(dir().join("test-key.key")).unwrap();
    let why = err(&private);
    assert!(why.starts_with("keys/k.pub: expected a PEM PUBLIC KEY, found '-----BEGIN PRIVATE KEY-----'"), "{why}");
    assert!(err(b"hello").contains("keys/k.pub: no '-----BEGIN PUBLIC KEY-----' block"));
    assert!(err(b"-----BEGIN PUBLIC KEY-----\nAAAA\n").contains("has no '-----END PUBLIC KEY-----'"));
    assert!(err(b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n").contains("not valid base64"));
    assert!(err(&[0xff, 0xfe]).contains("not PEM text"));
    // An Ed25519 key (RFC 8410's example): refused as not P-256.
    let ed = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    assert!(err(ed).contains("keys/k.pub: not an ECDSA P-256 public key"), "{}", err(ed));
}

#[test]
fn cosign_tags_name_the_subject() {
    let d = subject();
    let hex = d.hex();
    assert_eq!(
        cosign_tags(&d),
        [format!("sha256-{hex}.sig"), format!("sha256-{hex}.att"), format!("sha256-{hex}.sbom")]
    );
}

#[test]
fn the_cluster_image_policy_carries_the_key_and_scopes() {
    let pem = std::fs::read(dir().join("test-key.pub")).unwrap();
    let scopes = vec!["mirror.example.com/ocp/release".to_string()];
    let policy = cluster_image_policy("airlift-signed", &scopes, &pem);
    assert_eq!(policy["apiVersion"], "config.openshift.io/v1");
    assert_eq!(policy["kind"], "ClusterImagePolicy");
    assert_eq!(policy["metadata"]["name"], "airlift-signed");
    assert_eq!(policy["spec"]["scopes"][0], "mirror.example.com/ocp/release");
    let root = &policy["spec"]["policy"]["rootOfTrust"];
    assert_eq!(root["policyType"], "PublicKey");
    let data = base64::engine::general_purpose::STANDARD.decode(root["publicKey"]["keyData"].as_str().unwrap());
    assert_eq!(data.unwrap(), pem);
    assert_eq!(policy["spec"]["policy"]["signedIdentity"]["matchPolicy"], "MatchRepository");
    // A key file with a comment around its block: keyData is the block alone.
    let commented = [b"# TEST KEY\n".as_slice(), &pem, b"trailing\n"].concat();
    let policy = cluster_image_policy("p", &scopes, &commented);
    let data = policy["spec"]["policy"]["rootOfTrust"]["publicKey"]["keyData"].as_str().unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).unwrap(), pem);
}

/// Signatures made by real `cosign` (containers/image's test fixtures, imported by
/// `make-vectors.py import`): interoperability, not just agreement with our generator.
#[test]
fn signatures_made_by_real_cosign_verify() {
    let real = |vector: &str, keys: &[PublicKey], rekor: Option<&PublicKey>| {
        let subject = std::fs::read_to_string(dir().join("real-cosign").join(vector).join("subject.txt")).unwrap();
        check(&format!("real-cosign/{vector}"), &subject.trim().parse().unwrap(), keys, rekor)
    };
    let (one, two) = (key("real-cosign/cosign.pub"), key("real-cosign/cosign2.pub"));
    let rekor = key("real-cosign/rekor.pub");
    assert_eq!(real("valid", &[two.clone(), one.clone()], None), Verdict::Signed { key: one.id() });
    assert!(matches!(real("valid", std::slice::from_ref(&two), None), Verdict::Bad(_)));
    let verdict = real("key-rekor-valid", &[one.clone(), two.clone()], Some(&rekor));
    let Verdict::Signed { key: signed } = verdict else { panic!("{verdict:?}") };
    assert_eq!(signed, format!("{}; rekor entry 11608800 verified", two.id()));
    let why = bad(real("key-rekor-valid", &[one, two], Some(&key("rekor-key.pub"))));
    assert!(why.contains("not the given Rekor key's"), "{why}");
}

/// A signature image gathering several signatures: one that holds signs the subject (as in
/// `cosign verify`); none holding is Bad naming every layer.
#[test]
fn one_good_signature_among_several_signs_and_none_is_bad_naming_each() {
    let layer = |vector: &str| {
        let manifest = std::fs::read(dir().join(vector).join("manifest.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&manifest).unwrap()["layers"][0].clone()
    };
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("good/manifest.json")).unwrap()).unwrap();
    manifest["layers"] = serde_json::json!([layer("tampered-signature"), layer("good")]);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let blob = |d: &Digest| std::fs::read(dir().join("good/blobs/sha256").join(d.hex())).ok();
    let test = key("test-key.pub");
    let verdict = verify(&bytes, &blob, &subject(), std::slice::from_ref(&test), None);
    assert_eq!(verdict, Verdict::Signed { key: test.id() });
    let why = bad(verify(&bytes, &blob, &subject(), &[key("other-key.pub")], None));
    assert!(why.starts_with("signature layer 0 (sha256:") && why.contains("; signature layer 1 (sha256:"), "{why}");
}

/// The generator's `sign` command, which end-to-end tests call to sign images at test
/// time, makes signature images this verifier accepts, for the subject and key given.
#[test]
fn the_generator_signs_at_test_time() {
    let out = tempfile::tempdir().unwrap();
    let subject = Digest::of(b"an image signed at test time");
    let run = std::process::Command::new("python3")
        .arg(dir().join("make-vectors.py"))
        .args(["sign", &dir().join("test-key.key").display().to_string(), &subject.to_string()])
        .args(["mirror.example.com/app", &out.path().display().to_string()])
        .args(["--rekor", &dir().join("rekor-key.key").display().to_string()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest = std::fs::read(out.path().join("manifest.json")).unwrap();
    // It prints the signature manifest's digest, for pushing it by digest.
    assert_eq!(String::from_utf8(run.stdout).unwrap().trim(), Digest::of(&manifest).to_string());
    let blob = |d: &Digest| std::fs::read(out.path().join("blobs/sha256").join(d.hex())).ok();
    let test = key("test-key.pub");
    let verdict = verify(&manifest, &blob, &subject, std::slice::from_ref(&test), Some(&key("rekor-key.pub")));
    assert_eq!(verdict, Verdict::Signed { key: format!("{}; rekor entry 4242 verified", test.id()) });
}
