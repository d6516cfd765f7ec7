//! The return codes of the module's operations, as the kernel patch reads
//! them.
//!
//! For a load the patch distinguishes exactly one code: `-ENOENT` ("the
//! backend does not hold this slot") sends the swap-in on to zswap and the
//! swap device. Every other error fails the swap-in like an I/O error: the
//! device has stale bytes for a slot the backend took, so reading it would
//! hand a process the wrong page. [`load_status`] therefore gives `-ENOENT`
//! for [`Error::NotFound`] alone.

use foldswap_mem::Error;

/// Linux error numbers (include/uapi/asm-generic/errno*.h; the same on
/// every architecture the module builds for).
pub mod errno {
    /// No such file or directory: "not stored here".
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// No data available.
    pub const ENODATA: i32 = 61;
    /// Value too large for defined data type.
    pub const EOVERFLOW: i32 = 75;
    /// Cannot send after transport endpoint shutdown.
    pub const ESHUTDOWN: i32 = 108;
}

/// The negative errno for `e`. Only [`Error::NotFound`] is `-ENOENT`.
pub fn errno(e: Error) -> i32 {
    -match e {
        Error::NotFound => errno::ENOENT,
        Error::OutOfMemory => errno::ENOMEM,
        Error::PoolFull => errno::ENOSPC,
        Error::Incompressible => errno::ENODATA,
        Error::Corrupt => errno::EIO,
        Error::CapacityExceeded => errno::EOVERFLOW,
        Error::ShutDown => errno::ESHUTDOWN,
        // Wrong lengths, handles, arguments and anything added later are
        // bugs, never "not stored".
        _ => errno::EINVAL,
    }
}

/// 0 or the negative errno: what `store`, `init` and the parameters return.
pub fn status(r: Result<(), Error>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

/// What `load` returns: 0 (filled), `-ENOENT` (not held: the kernel reads
/// zswap and the device) or another negative errno (held but unreadable, or
/// the backend is broken: the swap-in fails).
pub fn load_status(r: Result<(), Error>) -> i32 {
    status(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Error; 11] = [
        Error::OutOfMemory,
        Error::PoolFull,
        Error::WrongLength {
            expected: 4096,
            actual: 1,
        },
        Error::InvalidHandle,
        Error::Corrupt,
        Error::NotFound,
        Error::CapacityExceeded,
        Error::Incompressible,
        Error::InvalidArgument("x"),
        Error::ShutDown,
        Error::Corrupt,
    ];

    #[test]
    fn only_not_found_falls_through_to_the_device() {
        assert_eq!(load_status(Ok(())), 0);
        assert_eq!(load_status(Err(Error::NotFound)), -errno::ENOENT);
        for e in ALL.into_iter().filter(|e| *e != Error::NotFound) {
            let code = load_status(Err(e));
            assert!(code < 0, "{e:?} must be an error, got {code}");
            assert_ne!(code, -errno::ENOENT, "{e:?} would read stale device bytes");
        }
        // A load that cannot decode is an I/O error.
        assert_eq!(load_status(Err(Error::Corrupt)), -errno::EIO);
    }

    #[test]
    fn stores_fail_with_their_cause() {
        assert_eq!(status(Err(Error::PoolFull)), -errno::ENOSPC);
        assert_eq!(status(Err(Error::OutOfMemory)), -errno::ENOMEM);
        assert_eq!(status(Err(Error::Incompressible)), -errno::ENODATA);
        assert_eq!(status(Err(Error::ShutDown)), -errno::ESHUTDOWN);
    }
}
