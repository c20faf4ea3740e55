//! `airlift install`: set up a registry root (see `registry::install`).

use crate::cli::InstallArgs;
use crate::error::Status;
use crate::output::Output;
use crate::registry::install::{self, InstallOptions};

pub fn run(args: &InstallArgs, out: &Output) -> anyhow::Result<Status> {
    if args.reset_password {
        let reset = install::reset_password(&args.root, args.user.as_deref())?;
        out.document(&install::report(out, &reset));
        return Ok(Status::Ok);
    }
    let opts = InstallOptions {
        hostname: args.hostname.clone(),
        port: args.port,
        user: args.user.clone().unwrap_or_else(|| install::DEFAULT_USER.to_string()),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        start: !args.no_start,
    };
    let installed = install::install(&args.root, &opts)?;
    let doc = install::report(out, &installed);
    out.document(&doc);
    Ok(Status::Ok)
}
