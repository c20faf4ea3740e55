//! `airlift status`: what a registry root serves and holds (see `trip::status`).

use crate::cli::StatusArgs;
use crate::error::Status;
use crate::output::Output;
use crate::trip::status;

pub fn run(args: &StatusArgs, out: &Output) -> anyhow::Result<Status> {
    let status = status::of_root(&args.root)?;
    out.data(status.summary());
    for warning in status.warnings() {
        out.warn(warning);
    }
    out.document(&status.document());
    Ok(Status::Ok)
}
