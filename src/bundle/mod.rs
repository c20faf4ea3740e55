//! The on-media bundle format v1: manifest, typed ids, names, tar framing, signing,
//! writing, reading and unpacking, discs and their ISO 9660 images (`discs`, `images`), what
//! unpack accepts beyond the signature (`trust`), and receipts of what a destination holds
//! (`receipt`). A bundle is read from several directories (`sources`), disc by disc from one
//! drive (`feed`), and per-disc verify reports merge into one evidence document (`evidence`).

pub mod check;
pub mod discs;
pub mod evidence;
pub mod expand;
pub mod extract;
pub mod feed;
pub mod ids;
pub mod images;
pub mod manifest;
pub mod names;
pub mod parity;
pub mod reader;
pub mod receipt;
pub mod repair;
pub mod sign;
pub mod sources;
pub mod tar;
pub mod trust;
pub mod writer;
