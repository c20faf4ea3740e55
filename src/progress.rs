//! Progress reporting as seen by the library. The binary picks an implementation
//! (indicatif bars on a terminal, nothing otherwise); the library never depends on one.

/// Receives progress of a long operation measured in bytes.
pub trait Progress: Send + Sync {
    /// A new phase begins, `total` bytes long.
    fn start(&self, label: &str, total: u64);
    /// `n` more bytes were processed.
    fn advance(&self, n: u64);
    /// The phase ended.
    fn finish(&self);
}

/// Discards every report.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _label: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
