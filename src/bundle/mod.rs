//! The on-media bundle format v1: manifest, typed ids, names, tar framing, signing,
//! writing, reading and unpacking, what unpack accepts beyond the signature (`trust`), and
//! receipts of what a destination holds (`receipt`).

pub mod check;
pub mod expand;
pub mod extract;
pub mod ids;
pub mod manifest;
pub mod names;
pub mod parity;
pub mod reader;
pub mod receipt;
pub mod repair;
pub mod sign;
pub mod tar;
pub mod trust;
pub mod writer;
