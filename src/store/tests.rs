use std::fs::{self, File};

use super::*;

/// Without a lock, a fresh temp file (a concurrent run's, in flight) survives a purge
/// and one left untouched for longer than [`STALE_TEMP`] does not; under the run lock
/// every temp file goes.
#[test]
fn purges_keep_what_a_live_run_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let fresh = store.temp().unwrap().into_temp_path().keep().unwrap();
    let stale = store.temp().unwrap().into_temp_path().keep().unwrap();
    let old = std::time::SystemTime::now() - STALE_TEMP - std::time::Duration::from_secs(60);
    let f = File::options().write(true).open(&stale).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(old)).unwrap();
    store.purge_stale_temps().unwrap();
    assert!(fresh.exists(), "a temp file in use was purged");
    assert!(!stale.exists(), "a stale temp file was kept");
    let lock = store.lock_run(|_| panic!("nobody holds the lock")).unwrap();
    store.purge_temps(&lock).unwrap();
    assert!(!fresh.exists(), "under the run lock every temp file is a leftover");
}

#[test]
fn the_run_lock_makes_a_second_run_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let first = store.lock_run(|_| panic!("nobody holds the lock yet")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = dir.path().to_path_buf();
    let second = std::thread::spawn(move || {
        let store = BlobStore::create(&root).unwrap();
        let _lock = store.lock_run(|holder| tx.send(holder).unwrap()).unwrap();
    });
    let holder = rx.recv().unwrap();
    assert_eq!(holder, Some(std::process::id()));
    assert!(!second.is_finished(), "the second run did not wait");
    drop(first);
    second.join().unwrap();
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

/// A writer commits only what matches its digest and size; a mismatch leaves nothing
/// behind, not even its temp file.
#[test]
fn a_blob_writer_commits_only_a_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let good = digest_of(b"hello");
    let mut w = store.writer(&good, 5).unwrap();
    w.write_all(b"hel").unwrap();
    w.write_all(b"lo").unwrap();
    w.commit(|found| -> Error { panic!("a match was refused: {found:?}") }).unwrap();
    assert_eq!(fs::read(store.path(&good)).unwrap(), b"hello");

    let other = digest_of(b"other");
    let mut w = store.writer(&other, 5).unwrap();
    w.write_all(b"wrong").unwrap();
    let err = w.commit(|found| crate::error::integrity(format!("got {}", found.digest))).unwrap_err();
    assert_eq!(err.to_string(), format!("got {}", digest_of(b"wrong")));
    assert!(!store.path(&other).exists());
    let mut w = store.writer(&other, 6).unwrap();
    w.write_all(b"other").unwrap();
    let found = w.commit(|found| crate::error::integrity(found.size.to_string())).unwrap_err();
    assert_eq!(found.to_string(), "5");
    assert_eq!(fs::read_dir(State::Tmp.under(dir.path())).unwrap().count(), 0, "a temp file was left");
}

/// What a writer kept is resumed: hashed again, continued from its end, committed whole.
#[test]
fn a_kept_writer_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = digest_of(&data);
    let mut w = store.resume(&digest, data.len() as u64).unwrap();
    assert_eq!(w.written(), 0);
    w.write_all(&data[..40_000]).unwrap();
    w.keep().unwrap();
    let mut w = store.resume(&digest, data.len() as u64).unwrap();
    assert_eq!(w.written(), 40_000);
    assert!(!w.complete());
    w.write_all(&data[40_000..]).unwrap();
    assert!(w.complete());
    w.commit(|found| -> Error { panic!("{found:?}") }).unwrap();
    assert_eq!(fs::read(store.path(&digest)).unwrap(), data);
    assert!(!store.state(State::Partial(&digest)).exists(), "the partial file stayed");
}

/// A finished file becomes a blob only when it hashes to the digest; a mismatch leaves it
/// where it was.
#[test]
fn adopting_checks_the_digest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let path = dir.path().join("data");
    fs::write(&path, b"payload").unwrap();
    let wrong = digest_of(b"something else");
    let err = store.adopt(&path, &wrong, None, |w| crate::error::integrity(w.digest.to_string())).unwrap_err();
    assert_eq!(err.to_string(), digest_of(b"payload").to_string());
    assert!(path.exists() && !store.path(&wrong).exists());
    let right = digest_of(b"payload");
    assert_eq!(store.adopt(&path, &right, None, |w| crate::error::integrity(w.digest.to_string())).unwrap(), 7);
    assert_eq!(fs::read(store.path(&right)).unwrap(), b"payload");
    assert!(store.put_bytes(&right, b"payload").is_ok_and(|new| !new), "a stored blob was written again");
}

/// Without no-clobber a commit replaces the file; with it, it fails and leaves it.
#[test]
fn no_clobber_keeps_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("key");
    write_file(&dest, b"first", Commit::PRIVATE).unwrap();
    let err = write_file(&dest, b"second", Commit::PRIVATE.no_clobber()).unwrap_err();
    assert!(matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists), "{err}");
    assert_eq!(fs::read(&dest).unwrap(), b"first");
    write_file(&dest, b"second", Commit::mode(0o640)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"second");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o640);
}

/// A batch puts nothing in place until it is committed, then every file at once; a
/// writer whose bytes do not match never joins it.
#[test]
fn a_batch_commits_its_files_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let mut batch = Batch::default();
    let blobs: Vec<&[u8]> = vec![b"one", b"two", b"three"];
    for bytes in &blobs {
        let mut w = store.writer(&digest_of(bytes), bytes.len() as u64).unwrap();
        w.write_all(bytes).unwrap();
        batch.add(w.commit_later(|found| -> Error { panic!("{found:?}") }).unwrap());
    }
    let mut w = store.writer(&digest_of(b"four"), 4).unwrap();
    w.write_all(b"FOUR").unwrap();
    assert!(w.commit_later(|found| crate::error::integrity(found.digest.to_string())).is_err());
    let file = dir.path().join("files").join("f");
    let mut w = store.file_writer(file.clone(), &digest_of(b"file"), 4).unwrap();
    w.write_all(b"file").unwrap();
    batch.add(w.commit_later(|found| -> Error { panic!("{found:?}") }).unwrap());
    assert_eq!(batch.len(), 4);
    assert!(blobs.iter().all(|b| !store.path(&digest_of(b)).exists()) && !file.exists());
    batch.commit().unwrap();
    for bytes in &blobs {
        assert_eq!(fs::read(store.path(&digest_of(bytes))).unwrap(), *bytes);
    }
    assert_eq!(fs::read(&file).unwrap(), b"file");
    assert_eq!(fs::read_dir(State::Tmp.under(dir.path())).unwrap().count(), 0, "a temp file was left");
}
