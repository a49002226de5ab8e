//! Shared byte buffers: the bytes of a model ([`ModelBytes`]) and zero-copy ranges of them
//! ([`Bytes`]), so that `raw_data` of initializers is never copied while decoding.

use crate::error::{Error, Result};
use std::fmt;
use std::fs::File;
use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

/// The bytes a model (or an external data file) was read from, shared by everything that
/// borrows from them.
///
/// A memory-mapped file must not be modified by another process while mapped: the mapping would
/// change under the tensors that borrow it (as with every memory-mapping loader).
pub enum ModelBytes {
    /// A read-only memory map of a file.
    Mapped(memmap2::Mmap),
    /// Bytes owned in memory.
    Owned(Vec<u8>),
}

impl ModelBytes {
    /// Memory-map the file at `path` read-only (empty files are read, not mapped).
    pub fn map_file(path: &Path) -> Result<ModelBytes> {
        let file = File::open(path).map_err(|e| Error::Io(format!("cannot open '{}': {e}", path.display())))?;
        let len = file.metadata().map_err(|e| Error::Io(format!("cannot stat '{}': {e}", path.display())))?.len();
        if len == 0 {
            return Ok(ModelBytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only; the documented contract is that the file is not modified
        // while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::Io(format!("cannot memory-map '{}': {e}", path.display())))?;
        Ok(ModelBytes::Mapped(map))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ModelBytes::Mapped(m) => m,
            ModelBytes::Owned(v) => v,
        }
    }
}

impl fmt::Debug for ModelBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelBytes::Mapped(m) => write!(f, "ModelBytes::Mapped({} bytes)", m.len()),
            ModelBytes::Owned(v) => write!(f, "ModelBytes::Owned({} bytes)", v.len()),
        }
    }
}

/// An immutable range of a shared [`ModelBytes`]; cloning is cheap and never copies the bytes.
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<ModelBytes>,
    range: Range<usize>,
}

impl Bytes {
    /// Bytes owning `v`.
    pub fn from_vec(v: Vec<u8>) -> Bytes {
        let range = 0..v.len();
        Bytes { owner: Arc::new(ModelBytes::Owned(v)), range }
    }

    /// The whole of `owner`.
    pub fn from_owner(owner: Arc<ModelBytes>) -> Bytes {
        let range = 0..owner.as_slice().len();
        Bytes { owner, range }
    }

    /// `range` of `owner`, or `None` if it does not lie inside it.
    pub fn from_range(owner: &Arc<ModelBytes>, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > owner.as_slice().len() {
            return None;
        }
        Some(Bytes { owner: owner.clone(), range })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // The range was checked at construction; `get` keeps this panic-free regardless.
        self.owner.as_slice().get(self.range.clone()).unwrap_or(&[])
    }

    /// The buffer these bytes belong to (keeps them alive).
    pub fn owner(&self) -> &Arc<ModelBytes> {
        &self.owner
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes::from_vec(v)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_slice();
        write!(f, "Bytes({} bytes", s.len())?;
        if s.len() <= 16 {
            write!(f, ": {s:02x?}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_and_shared() {
        let owner = Arc::new(ModelBytes::Owned(vec![1, 2, 3, 4]));
        let b = Bytes::from_range(&owner, 1..3).unwrap();
        assert_eq!(&*b, &[2, 3]);
        assert_eq!(b.as_ptr(), owner.as_slice()[1..].as_ptr());
        assert!(Bytes::from_range(&owner, 3..5).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..2;
        assert!(Bytes::from_range(&owner, reversed).is_none());
        assert_eq!(Bytes::from_vec(vec![2, 3]), b);
    }
}
