//! Shared byte buffers: the bytes of a model ([`ModelBytes`]) and zero-copy ranges of them
//! ([`Bytes`]), so that `raw_data` of initializers is never copied while decoding.
//!
//! Pages of a mapped file that were read only once (protobuf structure while decoding, tensor
//! bytes that had to be copied into aligned buffers) can be dropped from the process with
//! [`ModelBytes::release_pages`]: the mapping is read-only and file-backed, so the bytes stay
//! readable and unchanged, the kernel reads them again from the page cache (or the file) if they
//! are ever touched. Without it a model's pages stay counted in the process's resident memory
//! next to the copies made of them. Bytes to be copied are best read from the file itself
//! ([`MappedFile::reopen`]), which maps nothing into the process.

use crate::error::{Error, Result};
use std::fmt;
use std::fs::File;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reading a page of a file mapping makes more of it resident: Linux maps the cached pages
/// around a fault ("fault-around", 64 KiB by default) or the whole large folio of the page cache
/// the page belongs to (up to 2 MiB, the PMD size of x86-64).
pub const MAPPED_AROUND_BYTES: usize = 2 << 20;

/// The bytes a model (or an external data file) was read from, shared by everything that
/// borrows from them.
///
/// A memory-mapped file must not be modified by another process while mapped: the mapping would
/// change under the tensors that borrow it (as with every memory-mapping loader).
pub enum ModelBytes {
    /// A read-only memory map of a file.
    Mapped(MappedFile),
    /// Bytes owned in memory.
    Owned(Vec<u8>),
}

/// A read-only, shared memory map of a whole file, and which file it is.
pub struct MappedFile {
    map: memmap2::Mmap,
    path: PathBuf,
    /// Device and inode numbers of the file (Unix), to recognise it when opened again.
    identity: Option<(u64, u64)>,
}

impl MappedFile {
    /// The path the file was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped file, opened again for reading, if its path still names it (same device and
    /// inode: not replaced since). `None` otherwise, and on systems other than Unix. Holds no
    /// descriptor open beyond the returned `File`.
    pub fn reopen(&self) -> Option<File> {
        let file = File::open(&self.path).ok()?;
        let identity = file_identity(&file)?;
        (Some(identity) == self.identity).then_some(file)
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(unix)]
fn file_identity(file: &File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(_file: &File) -> Option<(u64, u64)> {
    None
}

impl ModelBytes {
    /// Memory-map the file at `path` read-only (empty files are read, not mapped). The file
    /// descriptor is closed once mapped.
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
        Ok(ModelBytes::Mapped(MappedFile { map, path: path.to_path_buf(), identity: file_identity(&file) }))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ModelBytes::Mapped(m) => m,
            ModelBytes::Owned(v) => v,
        }
    }

    /// The mapped file, if these bytes are one.
    pub fn mapped_file(&self) -> Option<&MappedFile> {
        match self {
            ModelBytes::Mapped(m) => Some(m),
            ModelBytes::Owned(_) => None,
        }
    }

    /// True for a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, ModelBytes::Mapped(_))
    }

    /// Drop the resident pages of a mapped file that overlap `range` (clipped to the bytes;
    /// rounded out to whole pages) from this process: they no longer count in its memory, and
    /// are read back from the file if touched again, with the same contents. Does nothing for
    /// owned bytes and on non-Unix systems; failures are ignored (it only saves memory).
    pub fn release_pages(&self, range: Range<usize>) {
        #[cfg(unix)]
        if let ModelBytes::Mapped(m) = self {
            let end = range.end.min(m.map.len());
            if range.start < end {
                // SAFETY: MADV_DONTNEED on this read-only, shared, file-backed mapping changes no
                // byte that anyone can observe: nothing was ever written through it, so a dropped
                // page reads back from the file exactly as before (the file must not be modified
                // while mapped, see the type's documentation). Slices borrowed from the mapping
                // stay valid: the virtual range stays mapped.
                let _ = unsafe {
                    m.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, end - range.start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// [`release_pages`](Self::release_pages) for `range` and [`MAPPED_AROUND_BYTES`] on each
    /// side of it: all that reading `range` may have made resident.
    pub fn release_pages_around(&self, range: Range<usize>) {
        let start = range.start.saturating_sub(MAPPED_AROUND_BYTES);
        self.release_pages(start..range.end.saturating_add(MAPPED_AROUND_BYTES));
    }

    /// [`release_pages`](Self::release_pages) for all of the bytes.
    pub fn release_all_pages(&self) {
        self.release_pages(0..self.as_slice().len());
    }
}

impl fmt::Debug for ModelBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelBytes::Mapped(m) => write!(f, "ModelBytes::Mapped({} bytes of '{}')", m.len(), m.path.display()),
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

    /// Where these bytes lie in their owner.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
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

    #[test]
    fn released_pages_read_back_unchanged() {
        let path = std::env::temp_dir().join(format!("pmi_bytes_release_{}", std::process::id()));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let map = Arc::new(ModelBytes::map_file(&path).unwrap());
        assert!(map.is_mapped());
        if cfg!(unix) {
            let mut again = Vec::new();
            std::io::Read::read_to_end(&mut map.mapped_file().unwrap().reopen().unwrap(), &mut again).unwrap();
            assert_eq!(again, data);
        }
        let b = Bytes::from_range(&map, 5..200_001).unwrap();
        assert_eq!(b.range(), 5..200_001);
        assert_eq!(&*b, &data[5..200_001]);
        map.release_pages(10..100_000);
        map.release_pages(250_000..usize::MAX);
        assert_eq!(&*b, &data[5..200_001]);
        map.release_all_pages();
        assert_eq!(map.as_slice(), data.as_slice());
        let owned = ModelBytes::Owned(data.clone());
        owned.release_all_pages();
        assert_eq!(owned.as_slice(), data.as_slice());
        // A file replaced at the same path is not the mapped one.
        #[cfg(unix)]
        {
            let new_path = path.with_extension("new");
            std::fs::write(&new_path, b"other").unwrap();
            std::fs::rename(&new_path, &path).unwrap();
            assert!(map.mapped_file().unwrap().reopen().is_none());
            assert_eq!(&*b, &data[5..200_001]);
        }
        drop(b);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
