//! `airlift keygen`: create a minisign key pair (NAME.key, mode 0600, and NAME.pub).

use std::io::Write;
use std::path::Path;

use crate::cli::KeygenArgs;
use crate::error::{usage, Error, Status};
use crate::minisign::{self, SecretKey};
use crate::output::Output;
use crate::store::{self, Commit};

pub fn run(args: &KeygenArgs, out: &Output) -> anyhow::Result<Status> {
    check_name(&args.name)?;
    let secret_path = args.out.join(format!("{}.key", args.name));
    let public_path = args.out.join(format!("{}.pub", args.name));
    if !args.force {
        for path in [&secret_path, &public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(
                    usage(format!("{} already exists; use --force to overwrite the key pair", path.display())).into()
                );
            }
        }
    }
    let password = match &args.password_file {
        None => None,
        Some(file) => {
            let password = minisign::read_password(Some(file), "").map_err(Error::from)?;
            if password.is_empty() {
                return Err(usage(format!(
                    "{}: the password is empty; leave out --password-file for an unencrypted key",
                    file.display()
                ))
                .into());
            }
            Some(password)
        }
    };
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;

    if password.is_some() {
        out.info("deriving the key encryption key with scrypt (1 GiB of memory, a few seconds)…");
    }
    let (secret, public) = SecretKey::generate().map_err(Error::from)?;
    let secret_text = secret.to_file_text(password.as_deref()).map_err(Error::from)?;

    // Both files are written before either is committed, so a failure leaves no half pair.
    let secret_file = write_temp(&args.out, secret_text.as_bytes())?;
    let public_file = write_temp(&args.out, public.to_file_text().as_bytes())?;
    commit(secret_file, &secret_path, 0o600, args.force)?;
    if let Err(e) = commit(public_file, &public_path, 0o644, args.force) {
        if !args.force {
            // The secret key was new; do not leave half a key pair behind.
            let _ = std::fs::remove_file(&secret_path);
        }
        return Err(e);
    }

    let key_id = public.key_id_hex();
    let encrypted = password.is_some();
    out.data(format!("key id:     {key_id}"));
    out.data(format!(
        "secret key: {} ({})",
        secret_path.display(),
        if encrypted { "encrypted" } else { "not encrypted" }
    ));
    out.data(format!("public key: {}", public_path.display()));
    out.info(format!(
        "keep {} secret; give {} to whoever verifies (minisign -Vm FILE -p {} works too)",
        secret_path.display(),
        public_path.display(),
        public_path.display()
    ));
    if !encrypted {
        out.info("the secret key is not encrypted: only its file mode protects it (use --password-file to encrypt it)");
    }
    out.document(&serde_json::json!({
        "status": "ok",
        "key_id": key_id,
        "secret_key": secret_path,
        "public_key": public_path,
        "encrypted": encrypted,
    }));
    Ok(Status::Ok)
}

/// NAME becomes a file name in DIR: one plain path component.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.starts_with('-')
    {
        return Err(usage(format!(
            "invalid key name {name:?}: it becomes a file name (NAME.key, NAME.pub), so it must be \
             non-empty, contain no '/', and not start with '-'"
        )));
    }
    Ok(())
}

/// Write `bytes` to a fresh temp file in `dir` (mode 0600 until its commit gives it its own).
fn write_temp(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile, Error> {
    let mut file = store::temp_in(dir)?;
    file.write_all(bytes).map_err(|e| Error::io(file.path(), e))?;
    Ok(file)
}

/// Put the temp file in place with `mode`; without `force`, never replace an existing file
/// (one created since the check at the start is caught here).
fn commit(file: tempfile::NamedTempFile, dest: &Path, mode: u32, force: bool) -> anyhow::Result<()> {
    let how = if force { Commit::mode(mode) } else { Commit::mode(mode).no_clobber() };
    match store::commit_file(file, dest, how) {
        Ok(()) => Ok(()),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(usage(format!("{} already exists; use --force to overwrite the key pair", dest.display())).into())
        }
        Err(e) => Err(e.into()),
    }
}
