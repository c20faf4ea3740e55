//! verify's sink: reads are checked by the reader; this adds whole-entry checks.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::bundle::expand::Expander;
use crate::bundle::ids::{ChunkId, EntryId};
use crate::bundle::manifest::Compression;
use crate::bundle::reader::{Action, Bundle, ChunkWriter, Sink};
use crate::digest::Hasher;
use crate::error::{integrity, Result};

/// verify's sink: nothing is kept, but a compressed entry stored whole is expanded (into
/// nothing) to check it yields exactly its signed size and digest. With `deep`, split
/// entries whose parts are all read in order in this run are also hashed (or expanded)
/// whole and checked against their digest, as unpack does before it commits them.
pub struct Checker<'b> {
    bundle: &'b Bundle,
    deep: bool,
    rolling: Mutex<HashMap<EntryId, (u32, Whole)>>,
}

/// The running check of a whole entry.
enum Whole {
    Plain(Hasher, u64),
    Zstd(Expander<std::io::Sink>),
}

impl<'b> Checker<'b> {
    pub fn new(bundle: &'b Bundle, deep: bool) -> Checker<'b> {
        Checker { bundle, deep, rolling: Mutex::default() }
    }
}

impl Sink for Checker<'_> {
    fn action(&self, c: ChunkId) -> Action {
        let e = self.bundle.index.entry_of(c);
        let whole = self.bundle.index.chunks_of(e).len() == 1;
        let compressed = self.bundle.manifest.entry(e).compression == Compression::Zstd;
        if (whole && compressed) || (!whole && self.deep) {
            Action::Write
        } else {
            Action::Check
        }
    }

    fn open(&self, c: ChunkId) -> Result<Box<dyn ChunkWriter + '_>> {
        let e = self.bundle.index.entry_of(c);
        let entry = self.bundle.manifest.entry(e);
        let part = self.bundle.manifest.chunk(c).part;
        let taken = self.rolling.lock().ok().and_then(|mut r| r.remove(&e));
        let whole = match taken {
            Some((next, w)) if next == part => Some(w),
            _ if part == 0 => Some(match entry.compression {
                Compression::None => Whole::Plain(Hasher::new(), 0),
                Compression::Zstd => Whole::Zstd(Expander::new(entry, std::io::sink())?),
            }),
            // An earlier part was not read in order (damaged, or on an absent volume).
            _ => None,
        };
        Ok(Box::new(WholeCheck { checker: self, e, part, whole }))
    }
}

struct WholeCheck<'c, 'b> {
    checker: &'c Checker<'b>,
    e: EntryId,
    part: u32,
    whole: Option<Whole>,
}

impl ChunkWriter for WholeCheck<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self.whole.as_mut() {
            Some(Whole::Plain(h, n)) => {
                h.update(data);
                *n += data.len() as u64;
                Ok(())
            }
            Some(Whole::Zstd(exp)) => exp.write(data),
            None => Ok(()),
        }
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let bundle = self.checker.bundle;
        let entry = bundle.manifest.entry(self.e);
        let last = self.part as usize + 1 == bundle.index.chunks_of(self.e).len();
        match (self.whole, last) {
            (None, _) => Ok(()),
            (Some(Whole::Zstd(exp)), true) => exp.finish().map(|_| ()),
            (Some(Whole::Plain(h, n)), true) => {
                let digest = h.finish();
                if n != entry.size || digest != entry.digest {
                    return Err(integrity(format!(
                        "'{}' assembled from its parts is {n} bytes with {digest}; the signed manifest says {} bytes with {}",
                        entry.path, entry.size, entry.digest
                    )));
                }
                Ok(())
            }
            (Some(w), false) => {
                if let Ok(mut r) = self.checker.rolling.lock() {
                    r.insert(self.e, (self.part + 1, w));
                }
                Ok(())
            }
        }
    }
}
