//! The `airlift` command: the command line over the library (see `lib.rs` for the layers).
//! Only this crate parses arguments, prints and turns errors into exit codes.

mod app;
mod cli;
mod commands;
mod output;

// The library's modules, under the names the command modules use (`crate::bundle`, ...).
use airlift::{
    bundle, catalog, client, error, minisign, oci, openshift, progress, registry, size, source, space, store, text,
    time, trip,
};

fn main() -> std::process::ExitCode {
    app::run()
}
