use super::*;

fn digest(n: u8) -> Digest {
    Digest::of(&[n])
}

fn sample() -> Receipt {
    let blobs = (0..5u8)
        .map(|n| Held { digest: digest(n), size: 100 + u64::from(n), repository: Some(format!("ns/app{}", n % 2)) })
        .collect();
    let manifests = vec![Held { digest: digest(10), size: 500, repository: Some("ns/app0".into()) }];
    let tags = vec![
        HeldTag { tag: "ns/app0:1.0".into(), digest: digest(10) },
        HeldTag { tag: "ns/app0:latest".into(), digest: digest(10) },
    ];
    Receipt::new("/srv/airlift".into(), blobs, manifests, tags)
}

/// Write `lines` (header first) compressed, as a hand-made receipt.
fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, zstd::bulk::compress(text.as_bytes(), 3).unwrap()).unwrap();
}

/// A header line whose id matches `body`.
fn header(body: &[String]) -> String {
    let text: String = body.iter().map(|l| format!("{l}\n")).collect();
    format!(
        r#"{{"format":"airlift.receipt","version":1,"id":"{}","created":1,"destination":"/d","tool":"airlift 0"}}"#,
        body_id(text.as_bytes())
    )
}

fn load_lines(body: &[&str]) -> Result<Receipt> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.receipt");
    let body: Vec<String> = body.iter().map(|s| s.to_string()).collect();
    let mut lines = vec![header(&body)];
    lines.extend(body);
    write_lines(&path, &lines);
    Receipt::load(&path, &[])
}

fn blob_line(n: u8) -> String {
    format!(r#"{{"blob":"{}","size":{n}}}"#, digest(n))
}

#[test]
fn a_receipt_round_trips_sorted_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.receipt");
    let mut r = sample();
    let dup = r.blobs[0].clone();
    r = Receipt::new(r.destination, [r.blobs.clone(), vec![dup]].concat(), r.manifests, r.tags);
    assert_eq!(r.blobs.len(), 5);
    assert!(r.blobs.windows(2).all(|w| w[0].digest < w[1].digest));
    assert_eq!(r.id.len(), 32);
    r.write(&path, None).unwrap();
    let back = Receipt::load(&path, &[]).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.held(&digest(3)).unwrap().size, 103);
    assert_eq!(back.held(&digest(10)).unwrap().size, 500);
    assert!(back.held(&digest(11)).is_none());
    assert_eq!(back.total_bytes(), 100 + 101 + 102 + 103 + 104 + 500);
    let text = zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
    let first = text.split(|&b| b == b'\n').next().unwrap();
    assert!(
        first.starts_with(br#"{"format":"airlift.receipt","version":1,"id":""#),
        "{}",
        String::from_utf8_lossy(first)
    );
}

#[test]
fn a_signed_receipt_needs_one_of_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.receipt");
    let (sk, pk) = SecretKey::generate().unwrap();
    let (_, other) = SecretKey::generate().unwrap();
    let r = sample();
    r.write(&path, Some(&sk)).unwrap();
    assert!(signature_path(&path).exists());
    assert_eq!(Receipt::load(&path, &[other.clone(), pk.clone()]).unwrap(), r);
    assert_eq!(Receipt::load(&path, &[]).unwrap(), r, "without keys the signature is not needed");

    let e = Receipt::load(&path, &[other]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    assert!(e.to_string().contains("site.receipt.minisig") && e.to_string().contains("any trusted key"), "{e}");

    r.write(&path, None).unwrap();
    assert!(!signature_path(&path).exists(), "an unsigned receipt leaves no stale signature");
    let e = Receipt::load(&path, &[pk]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("is not signed"), "{e}");
}

#[test]
fn a_signature_made_for_another_receipt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = SecretKey::generate().unwrap();
    let path = dir.path().join("a.receipt");
    sample().write(&path, Some(&sk)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let forged = sk.sign(&bytes, "c", "timestamp:1 receipt:00000000000000000000000000000000");
    std::fs::write(signature_path(&path), forged).unwrap();
    let e = Receipt::load(&path, &[pk]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("for another receipt"), "{e}");
}

#[test]
fn a_tampered_byte_is_found_with_or_without_a_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = SecretKey::generate().unwrap();
    let path = dir.path().join("t.receipt");
    let r = sample();
    r.write(&path, Some(&sk)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Receipt::load(&path, &[pk]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    let e = Receipt::load(&path, &[]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "the zstd checksum finds it: {e}");
    assert!(e.to_string().contains("t.receipt: not a readable zstd receipt"), "{e}");

    // A body line changed and recompressed: the id no longer matches.
    let ok = dir.path().join("ok.receipt");
    r.write(&ok, None).unwrap();
    let text = String::from_utf8(zstd::decode_all(&std::fs::read(&ok).unwrap()[..]).unwrap()).unwrap();
    let changed = text.replacen("\"size\":100", "\"size\":1", 1);
    assert_ne!(changed, text);
    std::fs::write(&path, zstd::bulk::compress(changed.as_bytes(), 3).unwrap()).unwrap();
    let e = Receipt::load(&path, &[]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("do not match its id"), "{e}");
}

#[test]
fn unsorted_and_duplicate_lines_are_refused_by_number() {
    let (low, high) = if digest(1) < digest(2) { (1, 2) } else { (2, 1) };
    assert!(load_lines(&[blob_line(low).as_str(), &blob_line(high)]).is_ok());
    let e = load_lines(&[blob_line(high).as_str(), &blob_line(low)]).unwrap_err();
    assert!(matches!(e, Error::Usage(_)) && e.to_string().contains("line 3: out of order"), "{e}");
    let e = load_lines(&[blob_line(1).as_str(), &blob_line(1)]).unwrap_err();
    assert!(e.to_string().contains("line 3: out of order or repeated"), "{e}");
    let tag = format!(r#"{{"tag":"ns/a:1","digest":"{}"}}"#, digest(1));
    let e = load_lines(&[tag.as_str(), &blob_line(1)]).unwrap_err();
    assert!(e.to_string().contains("line 3"), "blobs come before tags: {e}");
}

#[test]
fn malformed_lines_are_refused_by_number() {
    for (line, why) in [
        (r#"{"blob":"sha256:00","size":1}"#.to_string(), "not a receipt line"),
        (format!(r#"{{"blob":"{}"}}"#, digest(1)), "expected a blob"),
        (format!(r#"{{"blob":"{}","size":1,"extra":2}}"#, digest(1)), "unknown field"),
        (format!(r#"{{"blob":"{}","size":1,"repository":"../x"}}"#, digest(1)), "not a repository name"),
        (format!(r#"{{"tag":"a b","digest":"{}"}}"#, digest(1)), "not a tag or ref name"),
        ("not json".to_string(), "not a receipt line"),
    ] {
        let e = load_lines(&[blob_line(0).as_str(), line.as_str()]).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("r.receipt: line 3") && e.to_string().contains(why), "{line}: {e}");
    }
}

#[test]
fn a_layout_ref_name_is_a_tag() {
    let tag = format!(r#"{{"tag":"registry.example/ns/app:1.0","digest":"{}"}}"#, digest(1));
    let plain = format!(r#"{{"tag":"v1.0","digest":"{}"}}"#, digest(1));
    let r = load_lines(&[tag.as_str(), plain.as_str()]).unwrap();
    assert_eq!(r.tags.len(), 2);
}

#[test]
fn bounds_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.receipt");
    sample().write(&path, None).unwrap();
    let small = |compressed, expanded, line| Limits { compressed, expanded, line };

    let e = load_within(&path, &[], small(10, 1 << 20, 1 << 10)).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("larger than the 10 bytes"), "{e}");
    let e = load_within(&path, &[], small(1 << 20, 300, 1 << 10)).unwrap_err();
    assert!(e.to_string().contains("expands to more than 300 bytes"), "{e}");
    let e = load_within(&path, &[], small(1 << 20, 1 << 20, 50)).unwrap_err();
    assert!(e.to_string().contains("line 1: longer than 50 bytes"), "{e}");
    assert!(load_within(&path, &[], small(1 << 20, 1 << 20, 1 << 10)).is_ok());

    // An oversized line with the real limit.
    let long = format!(r#"{{"blob":"{}","size":1,"repository":"{}"}}"#, digest(1), "a".repeat(70_000));
    let e = load_lines(&[long.as_str()]).unwrap_err();
    assert!(e.to_string().contains("line 2: longer than 65536 bytes"), "{e}");
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.receipt");
    sample().write(&path, None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let e = Receipt::load(&path, &[]).unwrap_err();
    assert!(e.to_string().contains("c.receipt"), "{e}");
    assert!(matches!(e, Error::Integrity(_)), "a cut zstd stream is damage: {e}");

    std::fs::write(&path, b"{\"format\":\"airlift.receipt\"}\n").unwrap();
    let e = Receipt::load(&path, &[]).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("not a readable zstd receipt"), "{e}");

    let text = "{\"format\":\"other\",\"version\":1,\"id\":\"x\",\"created\":1,\"destination\":\"d\",\"tool\":\"t\"}\n";
    std::fs::write(&path, zstd::bulk::compress(text.as_bytes(), 3).unwrap()).unwrap();
    let e = Receipt::load(&path, &[]).unwrap_err();
    assert!(matches!(e, Error::Usage(_)) && e.to_string().contains("line 1: format 'other'"), "{e}");

    let e = Receipt::load(&dir.path().join("none.receipt"), &[]).unwrap_err();
    assert!(matches!(e, Error::Usage(_)) && e.to_string().contains("no such receipt"), "{e}");

    let zero = dir.path().join("zero.receipt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let e = Receipt::load(&zero, &[]).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
}
