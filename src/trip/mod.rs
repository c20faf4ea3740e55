//! The trip library: what `pack` and `unpack` do, above the bundle format, the registry,
//! the client, the sources and OpenShift, below the commands.

pub mod mirror;
pub mod publish;
