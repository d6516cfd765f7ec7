//! A value built in place inside a container that has no in-place constructor.
//!
//! The backend's content store and ladder are kilobytes each and live inside spin
//! mutexes; `spin::Mutex::new(value)` would need the whole value on the stack
//! first, which a kernel stack cannot afford. Instead the mutex is built around an
//! [`InPlace::empty`] slot (nothing to copy) and the value is then written straight
//! into that slot, where it stays.

use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};

/// A `T` that was written in place after its container was built.
pub(crate) struct InPlace<T>(MaybeUninit<T>);

impl<T> InPlace<T> {
    /// An unfilled slot.
    ///
    /// # Safety
    /// The slot must be filled (`slot().write(..)` or an `init_in` into it) before
    /// it is dereferenced or dropped; if filling fails, the `InPlace` must be
    /// forgotten, not dropped.
    pub(crate) const unsafe fn empty() -> Self {
        InPlace(MaybeUninit::uninit())
    }

    /// The storage, to fill it.
    pub(crate) fn slot(&mut self) -> &mut MaybeUninit<T> {
        &mut self.0
    }
}

impl<T> Deref for InPlace<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `empty`'s contract: filled before any use.
        unsafe { self.0.assume_init_ref() }
    }
}

impl<T> DerefMut for InPlace<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { self.0.assume_init_mut() }
    }
}

impl<T> Drop for InPlace<T> {
    fn drop(&mut self) {
        // SAFETY: as in `deref`; dropped once, by its owner.
        unsafe { self.0.assume_init_drop() }
    }
}
