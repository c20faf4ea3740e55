//! airlift's integration tests: one binary, one module per area. They run the built
//! executable in fresh temp dirs and use real peers (minisign, skopeo, umoci, sha256sum,
//! tar). A peer that is missing fails the test under `CI=true` and skips it otherwise.

mod common;

mod abuse;
mod bearer;
mod catalog;
mod catalog_more;
mod certs;
mod client;
mod conformance;
mod differential;
mod docs;
mod dryrun;
mod faults;
mod format;
mod fsck;
mod gc;
mod graph;
mod graphdata;
mod guards;
mod imageset;
mod install;
mod iso;
mod keys;
mod media;
mod openshift;
mod parity;
mod policy;
mod prune;
mod push;
mod receipt;
mod registry;
mod registry_unpack;
mod release_signatures;
mod resume;
mod signatures;
mod space;
mod tamper;
mod trust;
mod users;
