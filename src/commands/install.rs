//! `airlift install`: set up a registry root (see `registry::install`).

use crate::cli::InstallArgs;
use crate::error::{usage, Status};
use crate::output::Output;
use crate::registry::certs::{self, RenewOptions};
use crate::registry::install::{self, InstallOptions, Installed};
use crate::registry::users;

pub fn run(args: &InstallArgs, out: &Output) -> anyhow::Result<Status> {
    if args.renew || args.renew_ca {
        return renew(args, out);
    }
    if !args.san.is_empty() {
        return Err(
            usage("--san goes with --renew or --renew-ca (a first install names this host and its addresses)").into()
        );
    }
    let password = args.password_file.as_deref().map(users::read_password_file).transpose()?;
    if args.reset_password {
        let reset = install::reset_password(&args.root, args.user.as_deref(), password)?;
        out.document(&present(out, &reset));
        return Ok(Status::Ok);
    }
    let opts = InstallOptions {
        hostname: args.hostname.clone(),
        port: args.port,
        user: args.user.clone().unwrap_or_else(|| install::DEFAULT_USER.to_string()),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        start: !args.no_start,
        password,
    };
    let installed = install::install(&args.root, &opts)?;
    out.document(&present(out, &installed));
    Ok(Status::Ok)
}

/// `--renew`, `--renew-ca`: the root's certificates (see `registry::certs`).
fn renew(args: &InstallArgs, out: &Output) -> anyhow::Result<Status> {
    let opts =
        RenewOptions { add: args.hostname.iter().chain(&args.san).cloned().collect(), use_next_ca: args.use_next_ca };
    let (summary, document) = if args.renew_ca {
        let next = certs::renew_ca(&args.root, &opts)?;
        (next.summary(), next.document())
    } else {
        let renewed = certs::renew(&args.root, &opts)?;
        (renewed.summary(), renewed.document())
    };
    out.data(summary);
    out.document(&document);
    Ok(Status::Ok)
}

/// Print what an install did (the summary on stdout through `out.data`: nothing in
/// `--json` mode; notes as warnings on stderr) and return its JSON document, for the
/// caller to print (`out.document`) or embed in its own (unpack's first-use install).
///
/// Credentials this run made are also kept for every JSON document of the run
/// (`Output::keep`: a run that fails later still gives them in its error document) and,
/// in `--json` mode, written to stderr at once, so a run killed before its document is
/// printed does not lose them.
pub fn present(out: &Output, installed: &Installed) -> serde_json::Value {
    if let Some(credentials) = installed.credentials() {
        out.keep("credentials", credentials);
        if let (true, Some(password)) = (out.json(), &installed.password) {
            out.warn(format!(
                "the registry at {} has a new password, shown only now (and in the JSON document): user {} password {password}",
                installed.root.display(),
                installed.user
            ));
        }
    }
    out.data(installed.summary());
    for note in installed.notes() {
        out.warn(note);
    }
    installed.document()
}
