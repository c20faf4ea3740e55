//! Library errors and their classification into exit statuses.

use std::io;
use std::path::{Path, PathBuf};

/// What a command's outcome means to the caller; the process exit code is its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything asked for was done and checked.
    Ok = 0,
    /// Integrity failure: signature, hash, foreign or truncated volume, malicious entry.
    Integrity = 1,
    /// Usage or operational error.
    Usage = 2,
    /// Volumes are absent; everything present is good.
    Incomplete = 3,
}

impl Status {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status reported when several problems were found: integrity beats usage beats
    /// incomplete, so a damaged bundle is never reported as merely incomplete.
    pub fn worst(self, other: Status) -> Status {
        fn rank(s: Status) -> u8 {
            match s {
                Status::Ok => 0,
                Status::Incomplete => 1,
                Status::Usage => 2,
                Status::Integrity => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Content does not match what was signed, or is malicious.
    #[error("{0}")]
    Integrity(String),
    /// A signed, intact bundle refused by policy (rollback, expiry), with what to do.
    #[error("{message}")]
    Refused { message: String, hint: String },
    /// Bad arguments or input the user supplied (not bundle content).
    #[error("{0}")]
    Usage(String),
    /// What was to be read is not there (no disc arrived in time); nothing present is bad.
    #[error("{0}")]
    Incomplete(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Sign(#[from] crate::minisign::Error),
    /// Not enough free space for what a command would write (refused before it starts).
    #[error("not enough free space")]
    NoSpace(Box<crate::space::Shortage>),
}

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::Integrity(_) | Error::Refused { .. } => Status::Integrity,
            Error::Sign(e) if e.is_integrity() => Status::Integrity,
            Error::Usage(_) | Error::Io { .. } | Error::Sign(_) | Error::NoSpace(_) => Status::Usage,
            Error::Incomplete(_) => Status::Incomplete,
        }
    }

    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the path an I/O error happened on.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Shorthand constructors used across the library.
pub fn integrity(msg: impl Into<String>) -> Error {
    Error::Integrity(msg.into())
}

/// A signed bundle refused by policy, with the hint printed after the error.
pub fn refused(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Refused { message: message.into(), hint: hint.into() }
}

pub fn incomplete(msg: impl Into<String>) -> Error {
    Error::Incomplete(msg.into())
}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}
