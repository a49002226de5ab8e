//! Byte storage behind a tensor: owned and 64-byte aligned, borrowed from a caller with a release
//! callback, or kept alive by a shared owner (a memory-mapped model file, a model's bytes).

use crate::error::{Error, Result};
use std::alloc::{alloc_zeroed, Layout};
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

/// Freed owned buffers kept for reuse, by exact byte length. Steady-state runs of a fixed-shape
/// model then allocate nothing from the system: no page faults, no zeroing by the kernel or by
/// `calloc`. Bounded so that idle memory stays small (see [`RECYCLE_MAX_BYTES`]).
mod recycle {
    use super::ALIGNMENT;
    use std::alloc::Layout;
    use std::sync::Mutex;

    /// Buffers smaller than this go straight back to the allocator, which serves them from
    /// its small bins. From 1 KB on, glibc treats a request as large and first merges every
    /// freed small chunk (`malloc_consolidate`): per run of a small MLP (1 KB activations)
    /// that cost ~5% of the latency before these buffers were recycled too.
    pub const MIN_BYTES: usize = 1 << 10;
    /// Total bytes kept idle across the process. Large enough for the intermediates of a
    /// batch of images (efficientnet_b0 at batch 8 has 38.5 MB activations: with a 32 MB
    /// per-buffer cap they were allocated, page-faulted and zeroed on every run, 3x slower).
    pub const MAX_BYTES: usize = 512 << 20;
    /// Idle buffers kept at most (the oldest are freed first).
    const MAX_IDLE: usize = 256;

    /// Idle buffers `(capacity, address)`, oldest first.
    static CACHE: Mutex<(Vec<(usize, usize)>, usize)> = Mutex::new((Vec::new(), 0));

    /// A recycled buffer of at least `len` bytes (previous contents) and its capacity, if one
    /// is idle: the most recently freed buffer of `len` to `2·len` bytes, whose lines are the
    /// likeliest to still be in the caches (an output written into a buffer that has left
    /// them first reads every line back from memory).
    pub fn take(len: usize) -> Option<(*mut u8, usize)> {
        if len < MIN_BYTES {
            return None;
        }
        let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let (idle, bytes) = &mut *g;
        let i = pick(idle, len)?;
        let (cap, p) = idle.remove(i);
        *bytes -= cap;
        Some((p as *mut u8, cap))
    }

    /// The buffer of `idle` (`(capacity, address)`, oldest first) that a request of `len` bytes
    /// takes: the most recently freed one of `len` to `2·len` bytes.
    pub(super) fn pick(idle: &[(usize, usize)], len: usize) -> Option<usize> {
        idle.iter().rposition(|&(cap, _)| cap >= len && cap / 2 <= len)
    }

    /// Keep `p` (allocated with `layout`) for reuse, or free it.
    pub fn give(p: *mut u8, layout: Layout) {
        let len = layout.size();
        let mut evicted = Vec::new();
        if len >= MIN_BYTES && len <= MAX_BYTES / 4 && layout.align() == ALIGNMENT {
            let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            let (idle, bytes) = &mut *g;
            idle.push((len, p as usize));
            *bytes += len;
            let mut n = 0;
            while *bytes > MAX_BYTES || idle.len() - n > MAX_IDLE {
                *bytes -= idle[n].0;
                n += 1;
            }
            evicted.extend(idle.drain(..n));
        } else {
            // SAFETY: `p` was allocated with `layout` and is no longer used.
            unsafe { std::alloc::dealloc(p, layout) }
        }
        for (cap, p) in evicted {
            let layout = Layout::from_size_align(cap, ALIGNMENT).expect("valid cached layout");
            // SAFETY: `p` was allocated with this layout and is no longer used.
            unsafe { std::alloc::dealloc(p as *mut u8, layout) }
        }
    }

    /// Free every idle buffer.
    pub fn clear() {
        let idle = {
            let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            g.1 = 0;
            std::mem::take(&mut g.0)
        };
        for (cap, p) in idle {
            let layout = Layout::from_size_align(cap, ALIGNMENT).expect("valid cached layout");
            // SAFETY: cached buffers were allocated with this layout and are unused.
            unsafe { std::alloc::dealloc(p as *mut u8, layout) }
        }
    }

    /// Bytes held idle now.
    pub fn idle_bytes() -> usize {
        CACHE.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// Free every idle recycled buffer (e.g. after the last session is dropped).
pub fn release_idle_buffers() {
    recycle::clear()
}

/// Bytes of freed tensor buffers kept for reuse.
pub fn idle_buffer_bytes() -> usize {
    recycle::idle_bytes()
}

/// Upper bound of [`idle_buffer_bytes`].
pub const RECYCLE_MAX_BYTES: usize = recycle::MAX_BYTES;

impl Storage {
    /// A 64-byte aligned buffer of `len` bytes whose contents are unspecified (a recycled
    /// buffer's old values, or zeros): for outputs that the caller overwrites entirely.
    pub fn for_overwrite(len: usize) -> Result<Storage> {
        if let Some((p, cap)) = recycle::take(len) {
            let layout = Layout::from_size_align(cap, ALIGNMENT).expect("recycled layout is valid");
            // SAFETY: a non-null buffer of `cap >= len` bytes we own.
            let ptr = unsafe { NonNull::new_unchecked(p) };
            return Ok(Storage { ptr, len, writable: true, owner: Owner::Aligned(layout) });
        }
        Storage::zeroed(len)
    }

    /// A zero-filled, 64-byte aligned buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Result<Storage> {
        if let Some((p, cap)) = recycle::take(len) {
            // SAFETY: a buffer of `cap >= len` bytes we own.
            unsafe { std::ptr::write_bytes(p, 0, len) };
            let layout = Layout::from_size_align(cap, ALIGNMENT).expect("recycled layout is valid");
            // SAFETY: non-null, owned.
            let ptr = unsafe { NonNull::new_unchecked(p) };
            return Ok(Storage { ptr, len, writable: true, owner: Owner::Aligned(layout) });
        }
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
        let mut s = Storage::for_overwrite(bytes.len())?;
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
            Owner::Aligned(layout) => recycle::give(self.ptr.as_ptr(), *layout),
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
    fn batch_sized_buffers_are_recycled() {
        // An activation of a batch of images: dropped, it comes back for the next run instead
        // of being allocated, page-faulted and zeroed again. 120 MB: a freed buffer serves
        // requests down to half its size, and no other test asks for 60 MB or more (tests
        // share the process-wide cache).
        let len = (120 << 20) + 7 * ALIGNMENT;
        let first = Storage::for_overwrite(len).unwrap();
        let p = first.as_ptr();
        drop(first);
        // Straight from the cache (the allocator might hand the same address back anyway).
        let kept = recycle::take(len);
        assert_eq!(kept, Some((p as *mut u8, len)), "a {len}-byte buffer was not kept for reuse");
        recycle::give(p as *mut u8, Layout::from_size_align(len, ALIGNMENT).unwrap());
    }

    #[test]
    fn the_latest_freed_buffer_of_up_to_twice_the_size_is_picked() {
        // (capacity, address), oldest first.
        let idle = [(4096, 1), (1500, 2), (2048, 3), (8192, 4)];
        // The latest of len..=2·len bytes: the 2048, freed after the exact-size 1500.
        assert_eq!(recycle::pick(&idle, 1500), Some(2));
        assert_eq!(recycle::pick(&idle, 2048), Some(2));
        // 4096 for 3000 (the 8192 is newer but over twice the request), 8192 for 4097.
        assert_eq!(recycle::pick(&idle, 3000), Some(0));
        assert_eq!(recycle::pick(&idle, 4097), Some(3));
        // Nothing within twice the request, nothing large enough.
        assert_eq!(recycle::pick(&idle, 700), None);
        assert_eq!(recycle::pick(&idle, 9000), None);
    }

    #[test]
    fn a_larger_recycled_buffer_serves_a_request_zeroed_over_its_length() {
        // A freed buffer (filled with 7s) up to twice a later request's size serves it; zeroed
        // then clears the requested length. (Other tests share the process-wide cache, so which
        // buffer comes back is not asserted here: `pick` above is the policy.)
        let big = (30 << 20) + 3 * ALIGNMENT;
        let mut first = Storage::for_overwrite(big).unwrap();
        first.bytes_mut().unwrap().fill(7);
        drop(first);
        let z = Storage::zeroed(big / 2 + ALIGNMENT).unwrap();
        assert_eq!(z.len(), big / 2 + ALIGNMENT);
        assert!(z.bytes().iter().all(|b| *b == 0));
        let w = Storage::for_overwrite(big / 2 + 5 * ALIGNMENT).unwrap();
        assert_eq!(w.len(), big / 2 + 5 * ALIGNMENT);
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
