//! `airlift graph-data-copy SRC DEST`: the graph-data image's entrypoint; the copy is
//! [`crate::openshift::graphdata::copy_tree`]'s.

use crate::cli::GraphDataCopyArgs;
use crate::error::Status;
use crate::openshift::graphdata::copy_tree;
use crate::output::Output;

pub fn run(args: &GraphDataCopyArgs, out: &Output) -> anyhow::Result<Status> {
    let files = copy_tree(&args.src, &args.dest)?;
    out.info(format!("copied {files} file(s) from {} to {}", args.src.display(), args.dest.display()));
    Ok(Status::Ok)
}
