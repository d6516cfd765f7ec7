//! Test-only access to stored bytes (feature `testing`, never enabled in normal
//! builds): damage a live object in place, so tests and fuzz targets can check that
//! what decodes it gives a typed error or other bytes, never a panic, and that no
//! other object changes.
//!
//! A child of `store` so it writes through the store's own accessors (`entry`,
//! `read_at`, `write_at`) rather than copying their logic.

use super::{Error, ObjectStore, PageProvider, Place};

impl<P: PageProvider + Clone> ObjectStore<P> {
    /// Xor `xor` into byte `at` of the live object at `place`, where it lies
    /// (also across a page boundary). `Ok(false)` if `at` lies past the object's
    /// end (nothing changes), [`Error::InvalidHandle`] if the place names no live
    /// object. Every other object stays as it is.
    ///
    /// Like [`compact`](Self::compact), this changes a referenced object's bytes:
    /// no reader may be reading this object in place
    /// ([`object_in_place`](Self::object_in_place)) meanwhile.
    pub fn corrupt_object(&mut self, place: Place, at: usize, xor: u8) -> Result<bool, Error> {
        let offset = self.locate(place)?;
        if at >= place.len() {
            return Ok(false);
        }
        let mut byte = [0u8];
        self.read_at(place.zspage, offset + at, &mut byte);
        byte[0] ^= xor;
        self.write_at(place.zspage, offset + at, &byte);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use foldswap_mem::StdPageProvider;

    use crate::{Error, MAX_OBJECT, ObjectStore};

    #[test]
    fn corrupting_an_object_changes_that_byte_only() {
        let mut store = ObjectStore::new(StdPageProvider).unwrap();
        // Three objects of one class: the middle one is damaged, its neighbours not.
        let objects: [Vec<u8>; 3] = core::array::from_fn(|i| vec![i as u8 + 1; 1000]);
        let handles = objects
            .iter()
            .map(|bytes| store.store_object(bytes).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(store.corrupt_object(handles[1], 999, 0xff), Ok(true));
        assert_eq!(store.corrupt_object(handles[1], 1000, 0xff), Ok(false));
        let mut out = [0u8; MAX_OBJECT];
        for (i, (handle, bytes)) in handles.iter().zip(&objects).enumerate() {
            let mut want = bytes.clone();
            if i == 1 {
                want[999] ^= 0xff;
            }
            assert_eq!(store.read_object(*handle, &mut out), Ok(1000));
            assert_eq!(&out[..1000], &want[..], "object {i}");
        }
        store.free(handles[1]).unwrap();
        assert_eq!(
            store.corrupt_object(handles[1], 0, 1),
            Err(Error::InvalidHandle)
        );
    }

    #[test]
    fn an_object_across_two_pages_is_corrupted_where_it_lies() {
        let mut store = ObjectStore::new(StdPageProvider).unwrap();
        // 3000-byte slots: the second one spans the first page boundary.
        let handles = (0..3)
            .map(|i| store.store_object(&[i as u8; 3000]).unwrap())
            .collect::<Vec<_>>();
        let across = handles[1];
        assert!(store.object_in_place(across).unwrap().is_none());
        // Every byte, so those on both sides of the page boundary too.
        for at in 0..3000 {
            assert_eq!(store.corrupt_object(across, at, 0x80), Ok(true));
        }
        let mut out = [0u8; MAX_OBJECT];
        assert_eq!(store.read_object(across, &mut out), Ok(3000));
        assert!(out[..3000].iter().all(|&b| b == 0x81));
        for (handle, value) in [(handles[0], 0), (handles[2], 2)] {
            assert_eq!(store.read_object(handle, &mut out), Ok(3000));
            assert!(out[..3000].iter().all(|&b| b == value));
        }
    }
}
