//! The error type shared by every foldswap core.

use core::fmt;

/// What went wrong. Every fallible operation in the cores returns this (or a
/// crate-level error that wraps it); none of them panics on bad input.
///
/// A failed operation never loses or changes what was stored before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The host's page provider refused a page (memory is short).
    OutOfMemory,
    /// The configured size limit of a pool is reached.
    PoolFull,
    /// A page-sized buffer had the wrong length.
    WrongLength {
        /// The length that was required.
        expected: usize,
        /// The length that was passed.
        actual: usize,
    },
    /// A handle or key that was never issued, or was already freed.
    InvalidHandle,
    /// Stored data failed to decode (corrupt compressed stream, bad delta).
    Corrupt,
    /// Nothing is stored under this key (e.g. an unknown swap offset).
    NotFound,
    /// A fixed-capacity structure has no room left (not a memory shortage).
    CapacityExceeded,
    /// A page did not compress well enough and the policy rejects it.
    Incompressible,
    /// An argument or tunable is out of its documented range.
    InvalidArgument(&'static str),
    /// The component was shut down.
    ShutDown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfMemory => f.write_str("out of memory: the page provider refused a page"),
            Error::PoolFull => f.write_str("pool full: the configured size limit is reached"),
            Error::WrongLength { expected, actual } => {
                write!(f, "wrong length: expected {expected} bytes, got {actual}")
            }
            Error::InvalidHandle => f.write_str("invalid handle: never issued or already freed"),
            Error::Corrupt => f.write_str("corrupt data: stored bytes failed to decode"),
            Error::NotFound => f.write_str("not found: nothing is stored under this key"),
            Error::CapacityExceeded => f.write_str("capacity exceeded: a fixed-size table is full"),
            Error::Incompressible => f.write_str("incompressible: rejected by the size threshold"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::ShutDown => f.write_str("shut down"),
        }
    }
}

impl core::error::Error for Error {}
