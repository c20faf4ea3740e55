//! `airlift uninstall`: take a registry root down (see `registry::uninstall`).

use crate::cli::UninstallArgs;
use crate::error::Status;
use crate::output::Output;
use crate::registry::uninstall;

pub fn run(args: &UninstallArgs, out: &Output) -> anyhow::Result<Status> {
    let done = uninstall::uninstall(&args.root, args.data)?;
    out.data(done.summary());
    if !done.service_done {
        out.warn(format!("the systemd unit of {} is still there: {}", done.root.display(), done.service.join("; ")));
    }
    out.document(&done.document());
    Ok(Status::Ok)
}
