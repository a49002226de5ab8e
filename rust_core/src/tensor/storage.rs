//! Byte storage behind a tensor: owned and 64-byte aligned, borrowed from a caller with a release
//! callback, or kept alive by a shared owner (a memory-mapped model file, a model's bytes).

use crate::error::{Error, Result};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every buffer the core allocates.
pub const ALIGNMENT: usize = 64;

/// Largest buffer the core agrees to allocate in one piece (guards absurd sizes from bad input).
pub const MAX_ALLOC_BYTES: usize = 1 << 40;

/// Who frees the bytes of a [`Storage`].
enum Owner {
    /// Allocated by us with this layout.
    Aligned(Layout),
    /// Nothing to free (zero-size owned buffer).
    None,
    /// A caller's buffer: the callback runs exactly once, when the storage drops.
    External(Option<Box<dyn FnOnce() + Send>>),
    /// Bytes inside an object kept alive by reference counting (mmap, a byte vector).
    Shared(#[allow(dead_code)] Arc<dyn Any + Send + Sync>),
}

/// A contiguous run of bytes with a known owner. Immutable unless `writable`.
pub struct Storage {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    owner: Owner,
}

// SAFETY: the bytes are either owned by us, or by an owner the caller vouched can be released
// from any thread (documented in the C header); access goes through `&`/`&mut` rules of Tensor.
unsafe impl Send for Storage {}
unsafe impl Sync for Storage {}

impl Storage {
    /// A zero-filled, 64-byte aligned buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Result<Storage> {
        if len == 0 {
            return Ok(Storage { ptr: dangling(), len: 0, writable: true, owner: Owner::None });
        }
        if len > MAX_ALLOC_BYTES {
            return Err(Error::LimitExceeded(format!(
                "refusing to allocate {len} bytes (limit {MAX_ALLOC_BYTES})"
            )));
        }
        let layout = Layout::from_size_align(len, ALIGNMENT)
            .map_err(|_| Error::LimitExceeded(format!("cannot allocate {len} bytes")))?;
        // SAFETY: layout has non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p)
            .ok_or_else(|| Error::LimitExceeded(format!("out of memory allocating {len} bytes")))?;
        Ok(Storage { ptr, len, writable: true, owner: Owner::Aligned(layout) })
    }

    /// An aligned copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Result<Storage> {
        let mut s = Storage::zeroed(bytes.len())?;
        s.bytes_mut_unchecked().copy_from_slice(bytes);
        Ok(s)
    }

    /// Borrow a caller's buffer; `release` runs exactly once when the storage drops.
    ///
    /// # Safety
    /// `ptr` must be valid for reads of `len` bytes (and writes if `writable`) until `release`
    /// runs, and must not be written by anyone else while the storage is in use.
    pub unsafe fn external(
        ptr: *mut u8,
        len: usize,
        writable: bool,
        release: Option<Box<dyn FnOnce() + Send>>,
    ) -> Storage {
        let ptr = NonNull::new(ptr).unwrap_or_else(dangling);
        Storage { ptr, len, writable, owner: Owner::External(release) }
    }

    /// Read-only bytes inside `owner`, which keeps them alive.
    ///
    /// # Safety
    /// `ptr..ptr+len` must lie inside memory owned by `owner` and never change while it lives.
    pub unsafe fn shared(owner: Arc<dyn Any + Send + Sync>, ptr: *const u8, len: usize) -> Storage {
        let ptr = NonNull::new(ptr as *mut u8).unwrap_or_else(dangling);
        Storage { ptr, len, writable: false, owner: Owner::Shared(owner) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether writes through `bytes_mut` are allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Start of the bytes (never null; dangling but aligned when empty).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the storage's lifetime (constructor contracts).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Mutable bytes; `Error::ReadOnly` for read-only storage.
    pub fn bytes_mut(&mut self) -> Result<&mut [u8]> {
        if !self.writable {
            return Err(Error::ReadOnly("tensor data is read-only".into()));
        }
        Ok(self.bytes_mut_unchecked())
    }

    fn bytes_mut_unchecked(&mut self) -> &mut [u8] {
        // SAFETY: exclusive borrow of the storage; ptr valid for len bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Mutable pointer to shared storage (for the C ABI, where the caller promises exclusivity).
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        if !self.writable {
            return Err(Error::ReadOnly("tensor data is read-only".into()));
        }
        Ok(self.ptr.as_ptr())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        match &mut self.owner {
            Owner::Aligned(layout) => unsafe { dealloc(self.ptr.as_ptr(), *layout) },
            Owner::External(release) => {
                if let Some(f) = release.take() {
                    f()
                }
            }
            Owner::None | Owner::Shared(_) => {}
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.owner {
            Owner::Aligned(_) => "owned",
            Owner::None => "empty",
            Owner::External(_) => "external",
            Owner::Shared(_) => "shared",
        };
        write!(f, "Storage({kind}, {} bytes{})", self.len, if self.writable { "" } else { ", read-only" })
    }
}

fn dangling() -> NonNull<u8> {
    // An aligned, non-null address for empty buffers.
    NonNull::new(ALIGNMENT as *mut u8).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn owned_is_aligned_and_zeroed() {
        let s = Storage::zeroed(100).unwrap();
        assert_eq!(s.as_ptr() as usize % ALIGNMENT, 0);
        assert!(s.bytes().iter().all(|b| *b == 0));
        let e = Storage::zeroed(0).unwrap();
        assert_eq!(e.as_ptr() as usize % ALIGNMENT, 0);
    }

    #[test]
    fn absurd_size_is_refused() {
        assert!(matches!(Storage::zeroed(usize::MAX), Err(Error::LimitExceeded(_))));
    }

    #[test]
    fn external_release_runs_once() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let mut buf = vec![1u8, 2, 3];
        let s = unsafe {
            Storage::external(buf.as_mut_ptr(), 3, false, Some(Box::new(|| { COUNT.fetch_add(1, Ordering::SeqCst); })))
        };
        assert_eq!(s.bytes(), &[1, 2, 3]);
        let mut s = s;
        assert!(matches!(s.bytes_mut(), Err(Error::ReadOnly(_))));
        drop(s);
        assert_eq!(COUNT.load(Ordering::SeqCst), 1);
    }
}
