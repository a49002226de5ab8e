//! Machinery shared by the data-movement operators: kernels written once over an opaque element
//! (numeric elements moved by width: 1, 2, 4, 8 or 16 bytes; strings by clone), dispatch over
//! numeric element types for kernels that compare or compute, parallel row splitting, and
//! strided walks over N-D index spaces.

use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::tensor::{DType, Tensor};
use std::sync::Mutex;

/// An element moved without looking at it. Numeric elements are moved as plain integers of
/// their width (`clone_from_slice` on `Copy` types compiles to `memcpy`); strings are cloned.
pub trait Elem: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Elem for T {}

/// Sixteen-byte element (complex128), moved as two words.
pub type W16 = [u64; 2];

/// A data-movement kernel: fills `dst` from `srcs` (tensors of one dtype, viewed as `T`).
pub trait MoveKernel {
    /// Whether `run` writes every element of `dst` (which then starts unspecified, not zeroed).
    const WRITES_ALL: bool = false;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()>;
}

/// Views bytes as elements of `T` (the storage of a tensor is aligned for its dtype).
fn cast<T: Copy>(b: &[u8]) -> Result<&[T]> {
    let sz = std::mem::size_of::<T>();
    if b.is_empty() {
        return Ok(&[]);
    }
    if b.as_ptr() as usize % std::mem::align_of::<T>() != 0 || b.len() % sz != 0 {
        return Err(Error::Internal(
            "tensor data is not aligned for its element width".into(),
        ));
    }
    // SAFETY: alignment and length checked; T is an integer type (any bit pattern is valid).
    Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / sz) })
}

fn cast_mut<T: Copy>(b: &mut [u8]) -> Result<&mut [T]> {
    let sz = std::mem::size_of::<T>();
    if b.is_empty() {
        return Ok(&mut []);
    }
    if b.as_ptr() as usize % std::mem::align_of::<T>() != 0 || b.len() % sz != 0 {
        return Err(Error::Internal(
            "tensor data is not aligned for its element width".into(),
        ));
    }
    // SAFETY: as in `cast`, and the slice is borrowed mutably.
    Ok(unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut T, b.len() / sz) })
}

fn move_typed<T: Elem + Copy, K: MoveKernel>(
    dtype: DType,
    srcs: &[&Tensor],
    out_shape: &[usize],
    k: &K,
) -> Result<Tensor> {
    let views = srcs
        .iter()
        .map(|t| cast::<T>(t.bytes()?))
        .collect::<Result<Vec<&[T]>>>()?;
    let mut out = if K::WRITES_ALL { Tensor::for_overwrite(dtype, out_shape)? } else { Tensor::zeros(dtype, out_shape)? };
    let dst = cast_mut::<T>(out.make_mut_bytes()?)?;
    k.run(&views, dst)?;
    Ok(out)
}

/// Runs a data-movement kernel producing a tensor of `dtype` and `out_shape` from `srcs`,
/// which must all be of `dtype` (checked here, naming `op`).
pub fn apply_move(
    op: &str,
    dtype: DType,
    srcs: &[&Tensor],
    out_shape: &[usize],
    k: &impl MoveKernel,
) -> Result<Tensor> {
    for (i, s) in srcs.iter().enumerate() {
        if s.dtype() != dtype {
            return Err(Error::InvalidArgument(format!(
                "{op}: input {i} is {}, expected {dtype} like the other inputs",
                s.dtype()
            )));
        }
    }
    match dtype.size() {
        0 => {
            let views = srcs
                .iter()
                .map(|t| t.strings())
                .collect::<Result<Vec<&[Vec<u8>]>>>()?;
            let n = crate::tensor::checked_numel(out_shape)?;
            let mut out = vec![Vec::new(); n];
            k.run(&views, &mut out)?;
            Tensor::from_strings(out_shape, out)
        }
        1 => move_typed::<u8, _>(dtype, srcs, out_shape, k),
        2 => move_typed::<u16, _>(dtype, srcs, out_shape, k),
        4 => move_typed::<u32, _>(dtype, srcs, out_shape, k),
        8 => move_typed::<u64, _>(dtype, srcs, out_shape, k),
        16 => move_typed::<W16, _>(dtype, srcs, out_shape, k),
        w => Err(Error::Internal(format!("{op}: no element width {w}"))),
    }
}

/// A raw pointer that may cross threads (each thread writes a disjoint range).
struct SyncPtr<T>(*mut T);
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Bytes of output below which row-splitting is not worth a thread hand-off.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Processes `dst`, viewed as rows of `row_len` elements, in parallel chunks of whole rows:
/// `f(first_row, chunk)` where `chunk` holds the rows `first_row..first_row + chunk.len() / row_len`.
/// Small outputs run on the calling thread. The first error of any chunk is returned.
pub fn par_rows<T: Send>(
    pool: Option<&ThreadPool>,
    dst: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    let row_len = row_len.max(1);
    let rows = dst.len() / row_len;
    let pool = match pool {
        Some(p) if p.threads() > 1 && dst.len() >= PAR_MIN_ELEMS && rows > 1 => p,
        _ => return f(0, dst),
    };
    let min_rows = (PAR_MIN_ELEMS / 4 / row_len).max(1);
    let base = SyncPtr(dst.as_mut_ptr());
    let err: Mutex<Option<Error>> = Mutex::new(None);
    pool.parallel_for(rows, min_rows, |s, e| {
        // SAFETY: chunks [s, e) of rows are disjoint and inside `dst`, which outlives the call.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(base.get().add(s * row_len), (e - s) * row_len)
        };
        if let Err(x) = f(s, chunk) {
            let mut g = err.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some(x);
            }
        }
    });
    match err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Walks the row-major linear indices `start..end` of `shape`, calling `f(k, offset)` with
/// `offset = base + Σ idx[d] * strides[d]` (signed strides; the caller guarantees offsets stay
/// non-negative). Offsets are updated incrementally (no division per element).
pub fn walk_offsets(
    shape: &[usize],
    strides: &[isize],
    base: isize,
    start: usize,
    end: usize,
    mut f: impl FnMut(usize, usize),
) {
    if start >= end {
        return;
    }
    let r = shape.len();
    if r == 0 {
        f(0, base as usize);
        return;
    }
    let mut idx = vec![0usize; r];
    let mut rem = start;
    let mut off = base;
    for d in (0..r).rev() {
        let n = shape[d].max(1);
        idx[d] = rem % n;
        rem /= n;
        off += idx[d] as isize * strides[d];
    }
    let last = r - 1;
    let (n_last, s_last) = (shape[last], strides[last]);
    let mut k = start;
    loop {
        // Innermost dimension in a tight loop.
        let mut o = off;
        let stop = (k + (n_last - idx[last])).min(end);
        while k < stop {
            f(k, o as usize);
            o += s_last;
            k += 1;
        }
        if k >= end {
            return;
        }
        off -= idx[last] as isize * s_last; // back to idx[last] = 0
        idx[last] = 0;
        let mut d = last;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= shape[d] as isize * strides[d];
            idx[d] = 0;
        }
    }
}

/// Row-major strides (in elements) of `shape`, signed.
pub fn signed_strides(shape: &[usize]) -> Vec<isize> {
    crate::ops::common::strides_of(shape)
        .into_iter()
        .map(|s| s as isize)
        .collect()
}

/// Calls the generic expression with `$T` bound to the Rust type of a numeric dtype (bool as
/// `u8`); evaluates `$other` for other dtypes (strings, float8, complex, sub-byte types).
macro_rules! dispatch_numeric {
    ($dt:expr, $T:ident => $body:expr, $other:expr) => {{
        use $crate::tensor::DType as __D;
        match $dt {
            __D::Float32 => {
                type $T = f32;
                $body
            }
            __D::Float64 => {
                type $T = f64;
                $body
            }
            __D::Float16 => {
                type $T = half::f16;
                $body
            }
            __D::BFloat16 => {
                type $T = half::bf16;
                $body
            }
            __D::Int8 => {
                type $T = i8;
                $body
            }
            __D::Int16 => {
                type $T = i16;
                $body
            }
            __D::Int32 => {
                type $T = i32;
                $body
            }
            __D::Int64 => {
                type $T = i64;
                $body
            }
            __D::Uint8 | __D::Bool => {
                type $T = u8;
                $body
            }
            __D::Uint16 => {
                type $T = u16;
                $body
            }
            __D::Uint32 => {
                type $T = u32;
                $body
            }
            __D::Uint64 => {
                type $T = u64;
                $body
            }
            _ => $other,
        }
    }};
}

pub(crate) use dispatch_numeric;

/// Numeric element operations the computing kernels need, in the element's own arithmetic
/// (integers wrap; f16/bf16 compute through f32).
pub trait Num: crate::tensor::Element + PartialOrd {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn is_zero(self) -> bool;
    /// Total order for sorting (NaN last for floats).
    fn total_cmp(&self, o: &Self) -> std::cmp::Ordering;
}

macro_rules! num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_f64(self) -> f64 { self as f64 }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn is_zero(self) -> bool { self == 0 }
            fn total_cmp(&self, o: &Self) -> std::cmp::Ordering { self.cmp(o) }
        }
    )*};
}
num_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! num_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_f64(self) -> f64 { self as f64 }
            fn add(self, o: Self) -> Self { self + o }
            fn mul(self, o: Self) -> Self { self * o }
            fn is_zero(self) -> bool { self == 0.0 }
            fn total_cmp(&self, o: &Self) -> std::cmp::Ordering { nan_last(self.partial_cmp(o), self.is_nan(), o.is_nan()) }
        }
    )*};
}
num_float!(f32, f64);

macro_rules! num_half {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn to_f64(self) -> f64 { <$t>::to_f64(self) }
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn is_zero(self) -> bool { self.to_f32() == 0.0 }
            fn total_cmp(&self, o: &Self) -> std::cmp::Ordering { nan_last(self.partial_cmp(o), self.is_nan(), o.is_nan()) }
        }
    )*};
}
num_half!(half::f16, half::bf16);

fn nan_last(c: Option<std::cmp::Ordering>, a_nan: bool, b_nan: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match c {
        Some(c) => c,
        None => match (a_nan, b_nan) {
            (true, true) => Equal,
            (true, false) => Greater,
            _ => Less,
        },
    }
}

/// A one-element tensor of `dtype` holding `v` (converted with `as` semantics; bool: v != 0).
pub fn scalar_of(dtype: DType, v: f64, shape: &[usize]) -> Result<Tensor> {
    if dtype == DType::Bool {
        return Tensor::build::<u8>(dtype, shape, |o| {
            o.fill((v != 0.0) as u8);
            Ok(())
        });
    }
    dispatch_numeric!(dtype, T => Tensor::build::<T>(dtype, shape, |o| { o.fill(<T as Num>::from_f64(v)); Ok(()) }),
        Err(Error::UnsupportedDtype(format!("cannot make a {dtype} value")))
    )
}

/// Reads an integer tensor (a shape, axes, indices...) as i64 values, naming `what` on error.
pub fn ints_of(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    t.to_i64_vec().map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} must be an integer tensor, got {}",
            t.dtype()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_offsets_matches_division() {
        let shape = [2usize, 3, 4];
        let strides = [1isize, 8, 2];
        let mut got = Vec::new();
        walk_offsets(&shape, &strides, 5, 3, 20, |k, o| got.push((k, o)));
        let want: Vec<(usize, usize)> = (3..20)
            .map(|k| {
                let (a, b, c) = (k / 12, (k / 4) % 3, k % 4);
                (k, 5 + a + 8 * b + 2 * c)
            })
            .collect();
        assert_eq!(got, want);
        let mut n = 0;
        walk_offsets(&[], &[], 7, 0, 1, |_, o| {
            assert_eq!(o, 7);
            n += 1
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn par_rows_covers_rows() {
        let pool = ThreadPool::new(2);
        let mut v = vec![0usize; 100_000];
        par_rows(Some(&pool), &mut v, 10, |r0, c| {
            for (i, x) in c.iter_mut().enumerate() {
                *x = r0 * 10 + i;
            }
            Ok(())
        })
        .unwrap();
        assert!(v.iter().enumerate().all(|(i, x)| i == *x));
    }
}
