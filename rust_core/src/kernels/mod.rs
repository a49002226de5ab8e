//! Numeric kernels shared by operators (GEMM, convolution helpers, SIMD paths).
//!
//! Kernels work on plain slices and strides, never on tensors, so they can be benchmarked and
//! swapped (e.g. the GEMM backend) without touching the operators that call them.

pub mod activation;
pub mod conv;
pub mod float;
pub mod gemm;
pub mod sgemm;
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

    /// The sub-slice `start..start + len`.
    ///
    /// # Safety
    /// The range must lie inside the buffer and be accessed by no one else meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}
