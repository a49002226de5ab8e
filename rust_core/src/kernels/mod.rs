//! Numeric kernels shared by operators (GEMM, convolution helpers, SIMD paths).
//!
//! Kernels work on plain slices and strides, never on tensors, so they can be benchmarked and
//! swapped (e.g. the GEMM backend) without touching the operators that call them.

pub mod activation;
pub mod conv;
pub mod depthwise;
pub mod float;
pub mod gemm;
pub mod gemv;
pub mod maxpool;
pub mod sgemm;
pub mod transpose;
#[macro_use]
pub mod simd;
pub mod vmath;

/// A raw pointer that parallel tasks share to write disjoint parts of one output buffer.
pub struct SendPtr<T>(pub *mut T);
// SAFETY: users guarantee that concurrent tasks touch disjoint ranges.
unsafe impl<T> Sync for SendPtr<T> {}
unsafe impl<T> Send for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// Wrap the buffer's pointer.
    pub fn new(buf: &mut [T]) -> Self {
        SendPtr(buf.as_mut_ptr())
    }

    /// The pointer `start` elements further (same buffer).
    ///
    /// # Safety
    /// `start` must lie inside the buffer (or one past its end).
    pub unsafe fn offset(&self, start: usize) -> SendPtr<T> {
        SendPtr(self.0.add(start))
    }

    /// The sub-slice `start..start + len`.
    ///
    /// # Safety
    /// The range must lie inside the buffer and be accessed by no one else meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Working memory of a kernel, drawn from (and returned to) the tensor buffer recycler, so
/// steady-state runs neither allocate nor zero it. Contents are unspecified (initialized bits):
/// users overwrite what they read.
#[derive(Default)]
pub struct Scratch {
    buf: Option<crate::tensor::storage::Storage>,
}

impl Scratch {
    /// `len` elements of `T` (a plain number type: every bit pattern is a value).
    pub fn slice<T: float::Float>(&mut self, len: usize) -> crate::error::Result<&mut [T]> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| crate::error::Error::LimitExceeded(format!("scratch of {len} elements is too large")))?;
        if self.buf.as_ref().is_none_or(|b| b.len() != bytes) {
            self.buf = None; // give the old buffer back before taking a new one
            self.buf = Some(crate::tensor::storage::Storage::for_overwrite(bytes)?);
        }
        let b = self.buf.as_mut().expect("just set");
        let p = b.as_mut_ptr()? as *mut T;
        // SAFETY: `bytes` owned, 64-byte aligned bytes, initialized; T accepts any bit pattern.
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }
}
