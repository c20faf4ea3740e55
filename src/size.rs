//! Byte sizes, media presets and durations as given on the command line.

use std::fmt;
use std::str::FromStr;

/// A size in bytes, parsed from plain bytes or with a decimal (k, M, G, T) or binary
/// (KiB, MiB, GiB, TiB) suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 4700000000, 650M, 4GiB)"))?;
        let mult: u64 = match suffix.trim() {
            "" | "B" | "b" => 1,
            "k" | "K" | "kB" | "KB" => 1_000,
            "M" | "MB" => 1_000_000,
            "G" | "GB" => 1_000_000_000,
            "T" | "TB" => 1_000_000_000_000,
            "KiB" | "Ki" => 1 << 10,
            "MiB" | "Mi" => 1 << 20,
            "GiB" | "Gi" => 1 << 30,
            "TiB" | "Ti" => 1 << 40,
            other => return Err(format!("unknown size suffix '{other}' in '{s}' (use k, M, G, KiB, MiB, GiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("size '{s}' is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", human(self.0))
    }
}

/// Bytes in a short human form (binary units).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Largest file FAT32 and ISO 9660 (without multi-extent files) can hold.
pub const MAX_MEDIA_FILE: u64 = 4_294_967_295;

/// Room left on a disc for the filesystem and the bundle's small files (the manifest,
/// its signatures, the airlift executable, a README): 64 MiB, or a sixteenth of a disc
/// smaller than a GiB. Pack lowers the volume size when what every disc carries needs more.
const DISC_RESERVE: u64 = 64 << 20;

/// Media the volume size can be chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Media {
    /// USB stick or disk with FAT32: volumes just under 4 GiB
    Fat32,
    /// DVD±R, 4,700,372,992 bytes: two volumes per disc
    Dvd,
    /// DVD±R DL, 8,543,666,176 bytes: two volumes per disc
    DvdDl,
    /// BD-R 25 GB, 24,220,008,448 bytes: six volumes per disc
    Bd25,
}

impl Media {
    /// Capacity of one medium in bytes, when it is a disc.
    pub fn capacity(self) -> Option<u64> {
        match self {
            Media::Fat32 => None,
            // DVD+R is the smaller of DVD+R and DVD-R.
            Media::Dvd => Some(4_700_372_992),
            Media::DvdDl => Some(8_543_666_176),
            Media::Bd25 => Some(24_220_008_448),
        }
    }

    /// Volumes that fit on one medium.
    pub fn volumes_per_medium(self) -> u64 {
        self.capacity().map_or(1, disc_volumes)
    }

    /// Volume size: the medium (less a reserve) split into files no larger than the
    /// FAT32/ISO 9660 limit, rounded down to whole tar blocks.
    pub fn volume_size(self) -> u64 {
        self.capacity().map_or(MAX_MEDIA_FILE / 512 * 512, disc_volume_size)
    }
}

fn disc_reserve(capacity: u64) -> u64 {
    DISC_RESERVE.min(capacity / 16)
}

/// Volumes on a disc of `capacity` bytes (`--media`, `--disc-size`): as few as keep each
/// under the FAT32/ISO 9660 file limit once the reserve is left.
pub fn disc_volumes(capacity: u64) -> u64 {
    (capacity - disc_reserve(capacity)).div_ceil(MAX_MEDIA_FILE).max(1)
}

/// The volume size for a disc of `capacity` bytes: what is left after the reserve,
/// shared by [`disc_volumes`] volumes, in whole tar blocks.
pub fn disc_volume_size(capacity: u64) -> u64 {
    (capacity - disc_reserve(capacity)) / disc_volumes(capacity) / 512 * 512
}

/// A duration like `30d`, `12h`, `90m`, `45s` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 30d, 12h)"))?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" | "" => 86_400,
            "w" => 7 * 86_400,
            other => return Err(format!("unknown duration unit '{other}' (use s, m, h, d, w)")),
        };
        n.checked_mul(secs).map(Duration).ok_or_else(|| format!("duration '{s}' is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_decimal_and_binary() {
        assert_eq!("4700000000".parse::<ByteSize>().unwrap().0, 4_700_000_000);
        assert_eq!("650M".parse::<ByteSize>().unwrap().0, 650_000_000);
        assert_eq!("64k".parse::<ByteSize>().unwrap().0, 64_000);
        assert_eq!("4GiB".parse::<ByteSize>().unwrap().0, 4 << 30);
        assert_eq!("1KiB".parse::<ByteSize>().unwrap().0, 1024);
        assert!("12X".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999999999999G".parse::<ByteSize>().is_err());
    }

    #[test]
    fn media_volumes_fit_the_disc_and_the_file_limit() {
        for m in [Media::Fat32, Media::Dvd, Media::DvdDl, Media::Bd25] {
            let v = m.volume_size();
            assert!(v <= MAX_MEDIA_FILE, "{m:?}");
            assert_eq!(v % 512, 0);
            if let Some(c) = m.capacity() {
                assert!(v * m.volumes_per_medium() + DISC_RESERVE <= c, "{m:?}");
            }
        }
        assert_eq!(Media::Dvd.volumes_per_medium(), 2);
        assert_eq!(Media::Bd25.volumes_per_medium(), 6);
        // --disc-size: the same split; a small disc keeps a sixteenth, not 64 MiB.
        assert_eq!((disc_volumes(4_707_319_808), disc_volume_size(4_707_319_808)), (2, 2_320_105_472));
        assert_eq!((disc_volumes(3_000_000), disc_volume_size(3_000_000)), (1, 2_812_416));
    }

    #[test]
    fn durations_parse() {
        assert_eq!("30d".parse::<Duration>().unwrap().0, 30 * 86_400);
        assert_eq!("90m".parse::<Duration>().unwrap().0, 5400);
        assert!("3y".parse::<Duration>().is_err());
    }
}
