//! Typed ids of the bundle format, so chunk, entry and volume positions are never mixed
//! up. Each holds the 0-based position in the manifest's list; users and the signed
//! format count volumes from 1 (`VolumeId::number`), chunks are shown by position.

use std::fmt;

use serde::Serialize;

/// A chunk: its position in `Manifest::chunks` (shown as is, in reports too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChunkId(usize);

/// An entry: its position in `Manifest::entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(usize);

/// A volume: its position in `Manifest::volumes`; volume 1 (`NAME.0001.tar`) is index 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId(usize);

impl ChunkId {
    pub fn new(index: usize) -> ChunkId {
        ChunkId(index)
    }

    pub fn index(self) -> usize {
        self.0
    }
}

impl EntryId {
    pub fn new(index: usize) -> EntryId {
        EntryId(index)
    }

    pub fn index(self) -> usize {
        self.0
    }
}

impl VolumeId {
    pub fn new(index: usize) -> VolumeId {
        VolumeId(index)
    }

    /// The volume with 1-based `number` (as file names, labels and the signed chunk map
    /// count them); `None` for 0.
    pub fn from_number(number: u32) -> Option<VolumeId> {
        (number as usize).checked_sub(1).map(VolumeId)
    }

    pub fn index(self) -> usize {
        self.0
    }

    /// The 1-based number users see and the signed format records.
    pub fn number(self) -> u32 {
        self.0 as u32 + 1
    }

    /// The volume after this one.
    pub fn next(self) -> VolumeId {
        VolumeId(self.0 + 1)
    }

    /// The volume after `current`, or the first when there is none yet.
    pub fn after(current: Option<VolumeId>) -> VolumeId {
        current.map_or(VolumeId(0), VolumeId::next)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A volume is shown by its number (`volume 1` is `NAME.0001.tar`).
impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_numbered_from_one_and_indexed_from_zero() {
        assert_eq!(VolumeId::from_number(0), None);
        let v = VolumeId::from_number(1).unwrap();
        assert_eq!((v.index(), v.number(), v.to_string()), (0, 1, "1".to_string()));
        assert_eq!(VolumeId::new(2).number(), 3);
        assert_eq!(VolumeId::after(None), v);
        assert_eq!(VolumeId::after(Some(v)).number(), 2);
        assert_eq!(ChunkId::new(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Some(ChunkId::new(7))).unwrap(), "7");
    }
}
