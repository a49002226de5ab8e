//! The elementwise engine of the math family: numpy broadcasting over N inputs with the shapes
//! coalesced to the fewest dimensions, the innermost run handed to a tight loop, and the work
//! split over the thread pool when it is large.

use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::common::{broadcast_all, strides_of};
use crate::tensor::{DType, Element, Tensor};

/// Elements below which an elementwise kernel runs on one thread.
pub const PAR_MIN: usize = 1 << 15;

/// A raw pointer that may cross threads; users guarantee disjoint access.
pub struct SendPtr<T>(pub *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used to hand disjoint sub-slices of one buffer to pool workers.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Split `out` into contiguous chunks of at least `min_chunk` elements and call
/// `f(start, chunk)` on the pool.
pub fn par_chunks<T: Send>(pool: &ThreadPool, out: &mut [T], min_chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let n = out.len();
    if n < 2 * min_chunk || pool.threads() <= 1 {
        if n > 0 {
            f(0, out);
        }
        return;
    }
    let p = SendPtr(out.as_mut_ptr());
    pool.parallel_for(n, min_chunk, |s, e| {
        let p = p;
        // SAFETY: parallel_for hands out disjoint ranges inside 0..n.
        let chunk = unsafe { std::slice::from_raw_parts_mut(p.0.add(s), e - s) };
        f(s, chunk);
    });
}

/// Shapes broadcast together and coalesced: `dims` (innermost last) with per-input strides.
pub struct Broadcast<const N: usize> {
    /// The broadcast output shape (not coalesced).
    pub out_shape: Vec<usize>,
    dims: Vec<usize>,
    strides: [Vec<usize>; N],
}

impl<const N: usize> Broadcast<N> {
    /// Broadcast `shapes` (ShapeMismatch when incompatible).
    pub fn new(shapes: [&[usize]; N]) -> Result<Self> {
        let out_shape = broadcast_all(&shapes)?;
        let r = out_shape.len();
        let full: [Vec<usize>; N] = std::array::from_fn(|k| {
            let s = shapes[k];
            let st = strides_of(s);
            let off = r - s.len();
            (0..r).map(|i| if i < off || s[i - off] == 1 { 0 } else { st[i - off] }).collect()
        });
        // Drop size-1 dims, then merge neighbours that are contiguous for every input.
        let mut dims: Vec<usize> = Vec::with_capacity(r);
        let mut strides: [Vec<usize>; N] = std::array::from_fn(|_| Vec::with_capacity(r));
        for i in 0..r {
            let d = out_shape[i];
            if d == 1 {
                continue;
            }
            if let Some(&last) = dims.last() {
                let m = dims.len() - 1;
                let mergeable = (0..N).all(|k| strides[k][m] == full[k][i] * d);
                if mergeable {
                    dims[m] = last * d;
                    for k in 0..N {
                        strides[k][m] = full[k][i];
                    }
                    continue;
                }
            }
            dims.push(d);
            for k in 0..N {
                strides[k].push(full[k][i]);
            }
        }
        Ok(Broadcast { out_shape, dims, strides })
    }

    /// Number of output elements.
    pub fn len(&self) -> usize {
        self.out_shape.iter().product()
    }

    /// Call `row(out_run, offsets, inner_strides)` for every innermost run of the output,
    /// where `offsets[k]` is input k's element offset of the run's first element and
    /// `inner_strides[k]` its stride along the run (0 or 1 for contiguous inputs).
    pub fn run<O: Send>(
        &self,
        pool: &ThreadPool,
        out: &mut [O],
        row: impl Fn(&mut [O], [usize; N], [usize; N]) + Sync,
    ) {
        let total = out.len();
        if total == 0 {
            return;
        }
        let r = self.dims.len();
        if r == 0 {
            row(out, [0; N], [0; N]);
            return;
        }
        let inner = self.dims[r - 1];
        let inner_st: [usize; N] = std::array::from_fn(|k| self.strides[k][r - 1]);
        let rows = total / inner;
        if rows == 1 {
            par_chunks(pool, out, PAR_MIN, |s, chunk| {
                row(chunk, std::array::from_fn(|k| s * inner_st[k]), inner_st)
            });
            return;
        }
        let outer = &self.dims[..r - 1];
        let do_rows = |r0: usize, r1: usize, out: &mut [O]| {
            // Multi-index of row r0 over the outer dims, and the inputs' offsets.
            let mut idx = vec![0usize; outer.len()];
            let mut rem = r0;
            for d in (0..outer.len()).rev() {
                idx[d] = rem % outer[d];
                rem /= outer[d];
            }
            let mut base: [usize; N] =
                std::array::from_fn(|k| idx.iter().zip(&self.strides[k]).map(|(i, s)| i * s).sum());
            for (j, run) in out.chunks_mut(inner).enumerate().take(r1 - r0) {
                let _ = j;
                row(run, base, inner_st);
                // Advance the outer index by one.
                let mut d = outer.len();
                while d > 0 {
                    d -= 1;
                    idx[d] += 1;
                    for k in 0..N {
                        base[k] += self.strides[k][d];
                    }
                    if idx[d] < outer[d] {
                        break;
                    }
                    for k in 0..N {
                        base[k] -= self.strides[k][d] * idx[d];
                    }
                    idx[d] = 0;
                }
            }
        };
        if total < 2 * PAR_MIN || pool.threads() <= 1 {
            do_rows(0, rows, out);
            return;
        }
        let min_rows = PAR_MIN.div_ceil(inner).max(1);
        let p = SendPtr(out.as_mut_ptr());
        pool.parallel_for(rows, min_rows, |r0, r1| {
            let p = p;
            // SAFETY: disjoint row ranges of `out`.
            let chunk = unsafe { std::slice::from_raw_parts_mut(p.0.add(r0 * inner), (r1 - r0) * inner) };
            do_rows(r0, r1, chunk);
        });
    }
}

/// `out = f(a, b)` elementwise with broadcasting, into a new tensor of `out_dtype`.
pub fn binary<A: Element, B: Element, O: Element>(
    pool: &ThreadPool,
    a: &Tensor,
    b: &Tensor,
    out_dtype: DType,
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Tensor> {
    let av = a.as_slice::<A>()?;
    let bv = b.as_slice::<B>()?;
    // `o[j] = f(a[ia + j·sa], b[ib + j·sb])` over one run of the output.
    let kernel = |o: &mut [O], ia: usize, ib: usize, sa: usize, sb: usize| {
        let n = o.len();
        match (sa, sb) {
            (1, 1) => {
                for ((o, x), y) in o.iter_mut().zip(&av[ia..ia + n]).zip(&bv[ib..ib + n]) {
                    *o = f(*x, *y);
                }
            }
            (1, 0) => {
                let y = bv[ib];
                for (o, x) in o.iter_mut().zip(&av[ia..ia + n]) {
                    *o = f(*x, y);
                }
            }
            (0, 1) => {
                let x = av[ia];
                for (o, y) in o.iter_mut().zip(&bv[ib..ib + n]) {
                    *o = f(x, *y);
                }
            }
            _ => {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = f(av[ia + j * sa], bv[ib + j * sb]);
                }
            }
        }
    };
    // Equal shapes, or one side a single element of no higher rank (the common cases of small
    // graphs): one run over the output, without planning a broadcast.
    let flat = if a.shape() == b.shape() {
        Some((a.shape(), 1, 1))
    } else if b.len() == 1 && b.rank() <= a.rank() {
        Some((a.shape(), 1, 0))
    } else if a.len() == 1 && a.rank() <= b.rank() {
        Some((b.shape(), 0, 1))
    } else {
        None
    };
    if let Some((shape, sa, sb)) = flat {
        return Tensor::build_uninit::<O>(out_dtype, shape, |o| {
            par_chunks(pool, o, PAR_MIN, |start, chunk| kernel(chunk, start * sa, start * sb, sa, sb));
            Ok(())
        });
    }
    let bc = Broadcast::new([a.shape(), b.shape()])?;
    Tensor::build_uninit::<O>(out_dtype, &bc.out_shape.clone(), |o| {
        bc.run(pool, o, |o, [ia, ib], [sa, sb]| kernel(o, ia, ib, sa, sb));
        Ok(())
    })
}

/// `out = f(a, b, c)` elementwise with broadcasting (e.g. Where).
pub fn ternary<A: Element, B: Element, C: Element, O: Element>(
    pool: &ThreadPool,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    out_dtype: DType,
    f: impl Fn(A, B, C) -> O + Sync,
) -> Result<Tensor> {
    let bc = Broadcast::new([a.shape(), b.shape(), c.shape()])?;
    let av = a.as_slice::<A>()?;
    let bv = b.as_slice::<B>()?;
    let cv = c.as_slice::<C>()?;
    Tensor::build_uninit::<O>(out_dtype, &bc.out_shape.clone(), |o| {
        bc.run(pool, o, |o, [ia, ib, ic], [sa, sb, sc]| {
            if sa == 1 && sb == 1 && sc == 1 {
                let n = o.len();
                for (((o, x), y), z) in o.iter_mut().zip(&av[ia..ia + n]).zip(&bv[ib..ib + n]).zip(&cv[ic..ic + n]) {
                    *o = f(*x, *y, *z);
                }
            } else {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = f(av[ia + j * sa], bv[ib + j * sb], cv[ic + j * sc]);
                }
            }
        });
        Ok(())
    })
}

/// `out = f(a)` elementwise into a new tensor of `out_dtype`, parallel when large.
pub fn unary<A: Element, O: Element>(
    pool: &ThreadPool,
    a: &Tensor,
    out_dtype: DType,
    f: impl Fn(A) -> O + Sync,
) -> Result<Tensor> {
    let av = a.as_slice::<A>()?;
    Tensor::build_uninit::<O>(out_dtype, a.shape(), |o| {
        par_chunks(pool, o, PAR_MIN, |s, chunk| {
            let n = chunk.len();
            for (o, x) in chunk.iter_mut().zip(&av[s..s + n]) {
                *o = f(*x);
            }
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_broadcasts() {
        let pool = ThreadPool::new(2);
        let a = Tensor::from_slice(&[2, 3, 1], &[1i32, 2, 3, 4, 5, 6]).unwrap();
        let b = Tensor::from_slice(&[1, 4], &[10i32, 20, 30, 40]).unwrap();
        let c = binary::<i32, i32, i32>(&pool, &a, &b, DType::Int32, |x, y| x + y).unwrap();
        assert_eq!(c.shape(), &[2, 3, 4]);
        let v = c.as_slice::<i32>().unwrap();
        assert_eq!(&v[..8], &[11, 21, 31, 41, 12, 22, 32, 42]);
        assert_eq!(v[23], 46);
        let bc = Broadcast::new([&[4usize, 5, 6][..], &[4, 5, 6][..]]).unwrap();
        assert_eq!(bc.dims, vec![120]);
        let bc = Broadcast::new([&[4usize, 5, 6, 7][..], &[4, 5, 1, 1][..]]).unwrap();
        assert_eq!(bc.dims, vec![20, 42]);
        assert_eq!(bc.strides[1], vec![1, 0]);
    }

    #[test]
    fn large_parallel_matches_serial() {
        let pool = ThreadPool::new(3);
        let n = 3 * PAR_MIN + 7;
        let av: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let a = Tensor::from_slice(&[n], &av).unwrap();
        let s = Tensor::scalar(2f32);
        let c = binary::<f32, f32, f32>(&pool, &a, &s, DType::Float32, |x, y| x * y).unwrap();
        assert!(c.as_slice::<f32>().unwrap().iter().enumerate().all(|(i, v)| *v == 2.0 * i as f32));
        // Many rows.
        let rows = 2 * PAR_MIN / 3 + 5;
        let m: Vec<f32> = (0..rows * 3).map(|i| i as f32).collect();
        let a = Tensor::from_slice(&[rows, 3], &m).unwrap();
        let b = Tensor::from_slice(&[3], &[1f32, 2., 3.]).unwrap();
        let c = binary::<f32, f32, f32>(&pool, &a, &b, DType::Float32, |x, y| x + y).unwrap();
        let v = c.as_slice::<f32>().unwrap();
        assert!((0..rows * 3).all(|i| v[i] == i as f32 + (i % 3 + 1) as f32));
    }

    #[test]
    fn empty_and_scalar() {
        let pool = ThreadPool::new(1);
        let a = Tensor::from_slice::<f32>(&[0, 3], &[]).unwrap();
        let b = Tensor::from_slice(&[3], &[1f32, 2., 3.]).unwrap();
        let c = binary::<f32, f32, f32>(&pool, &a, &b, DType::Float32, |x, y| x + y).unwrap();
        assert_eq!(c.shape(), &[0, 3]);
        let s = binary::<f32, f32, f32>(&pool, &Tensor::scalar(1f32), &Tensor::scalar(2f32), DType::Float32, |x, y| x + y)
            .unwrap();
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[3.0]);
    }
}
