//! `airlift keygen`: create a minisign key pair (NAME.key, mode 0600, and NAME.pub).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cli::KeygenArgs;
use crate::error::{usage, Error, Status};
use crate::minisign::{self, SecretKey};
use crate::output::Output;

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

    let secret_file = write_temp(&args.out, &secret_path, secret_text.as_bytes(), 0o600)?;
    let public_file = write_temp(&args.out, &public_path, public.to_file_text().as_bytes(), 0o644)?;
    commit(secret_file, &secret_path, args.force)?;
    if let Err(e) = commit(public_file, &public_path, args.force) {
        if !args.force {
            // The secret key was new; do not leave half a key pair behind.
            let _ = std::fs::remove_file(&secret_path);
        }
        return Err(e);
    }
    sync_dir(&args.out)?;

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

/// Write `bytes` to a fresh temporary file next to `dest` with `mode`, and fsync it.
fn write_temp(dir: &Path, dest: &Path, bytes: &[u8], mode: u32) -> Result<tempfile::NamedTempFile, Error> {
    let prefix = format!(".{}.", dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    // tempfile creates the file with mode 0600, so the secret is never readable by others.
    let mut file =
        tempfile::Builder::new().prefix(&prefix).suffix(".tmp").tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let temp = file.path().to_path_buf();
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| file.write_all(bytes))
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| Error::io(&temp, e))?;
    Ok(file)
}

/// Rename the temporary file into place; without `force`, never replace an existing file
/// (one created since the check at the start is caught here).
fn commit(file: tempfile::NamedTempFile, dest: &Path, force: bool) -> anyhow::Result<()> {
    let result = if force { file.persist(dest) } else { file.persist_noclobber(dest) };
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(usage(format!("{} already exists; use --force to overwrite the key pair", dest.display())).into())
        }
        Err(e) => Err(Error::io(dest, e.error).into()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}
