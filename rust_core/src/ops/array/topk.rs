//! TopK: the k largest (or smallest) elements along an axis, with their indices; ties keep the
//! lower index first.

use super::concat::axis_in;
use super::elements::{dispatch_numeric, ints_of, Num};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::SendPtr;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::cmp::Ordering;

/// Up to this many wanted values, TopK keeps a sorted buffer of the best ones while scanning.
const SMALL_K: usize = 32;

struct TopK {
    axis: i64,
    largest: bool,
    /// Opset 1: k is an attribute.
    attr_k: Option<i64>,
}

/// The best `k` of the `n` values `x[start + i·stride]` into `buf`, best first (ties: lower
/// index first; NaN above +inf when `largest`, as `total_cmp`).
fn topk_line<T: Num>(x: &[T], n: usize, stride: usize, start: usize, k: usize, largest: bool, buf: &mut Vec<(T, usize)>) {
    let cmp = |a: &(T, usize), b: &(T, usize)| -> Ordering {
        let c = if largest {
            b.0.total_cmp(&a.0)
        } else {
            a.0.total_cmp(&b.0)
        };
        c.then(a.1.cmp(&b.1))
    };
    buf.clear();
    if k > 0 && k <= SMALL_K && k < n {
        // Few wanted: keep the best k sorted while scanning; most values lose to the current
        // k-th with one comparison (selecting over all n pairs cost 12 ns per value, 6x
        // onnxruntime's time for the top 5 of 1000). Same total order as the selection below,
        // so the same result.
        let consider = |buf: &mut Vec<(T, usize)>, i: usize| {
            let c = (x[start + i * stride], i);
            if buf.len() == k {
                if cmp(&c, &buf[k - 1]) != Ordering::Less {
                    return;
                }
                buf.pop();
            }
            let at = buf.partition_point(|b| cmp(b, &c) == Ordering::Less);
            buf.insert(at, c);
        };
        // Contiguous f32 lines on AVX-512: 16 values at a time against the current k-th best,
        // only those that may beat it taken one by one (2 ns per value scanned one at a time:
        // the top 5 of 64 lines of 1000 took 2x onnxruntime's time).
        #[cfg(target_arch = "x86_64")]
        if stride == 1 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
            let line = &x[start..start + n];
            // SAFETY: T is f32 (same type, checked above).
            let xf = unsafe { std::slice::from_raw_parts(line.as_ptr() as *const f32, n) };
            let mut i = 0;
            while i < n {
                if buf.len() == k && i + 16 <= n {
                    // SAFETY: T is f32; 16 values from i are inside the line; AVX-512 CPU.
                    let thr = unsafe { std::mem::transmute_copy::<T, f32>(&buf[k - 1].0) };
                    let mut m = unsafe { may_beat_f32(&xf[i..i + 16], thr, largest) };
                    while m != 0 {
                        consider(buf, i + m.trailing_zeros() as usize);
                        m &= m - 1;
                    }
                    i += 16;
                } else {
                    consider(buf, i);
                    i += 1;
                }
            }
            return;
        }
        for i in 0..n {
            consider(buf, i);
        }
        return;
    }
    buf.extend((0..n).map(|i| (x[start + i * stride], i)));
    if k < n && k > 0 {
        buf.select_nth_unstable_by(k - 1, cmp);
        buf.truncate(k);
    }
    buf.sort_unstable_by(cmp);
}

/// Lanes of `v` (16 values) that may come before `thr` in TopK's order: greater (`largest`) or
/// smaller, or unordered (NaN on either side: the exact comparison decides those).
///
/// # Safety
/// AVX-512F CPU; `v` holds at least 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn may_beat_f32(v: &[f32], thr: f32, largest: bool) -> u16 {
    use std::arch::x86_64::*;
    debug_assert!(v.len() >= 16);
    let (x, t) = (_mm512_loadu_ps(v.as_ptr()), _mm512_set1_ps(thr));
    if largest {
        _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(x, t)
    } else {
        _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(x, t)
    }
}

fn topk_typed<T: Num>(
    pool: &ThreadPool,
    x: &Tensor,
    axis: usize,
    k: usize,
    largest: bool,
) -> Result<(Tensor, Tensor)> {
    let s = x.shape();
    let n = s[axis];
    let pre: usize = s[..axis].iter().product();
    let post: usize = s[axis + 1..].iter().product();
    let mut out_shape = s.to_vec();
    out_shape[axis] = k;
    let xv = x.as_slice::<T>()?;
    let mut vals = vec![T::default(); pre * k * post];
    let mut idxs = vec![0i64; pre * k * post];
    let (vp, ip) = (SendPtr::new(&mut vals), SendPtr::new(&mut idxs));
    // Lines (one per outer and inner index) are independent: split them over the threads.
    pool.parallel_for(pre * post, (1 << 13) / n.max(1) + 1, |l0, l1| {
        let mut buf: Vec<(T, usize)> = Vec::with_capacity(n);
        for l in l0..l1 {
            let (p, q) = (l / post, l % post);
            topk_line(xv, n, post, p * n * post + q, k, largest, &mut buf);
            for (j, &(v, i)) in buf.iter().take(k).enumerate() {
                let o = (p * k + j) * post + q;
                // SAFETY: output positions (p·k + j)·post + q belong to line (p, q) alone.
                unsafe {
                    *vp.offset(o).0 = v;
                    *ip.offset(o).0 = i as i64;
                }
            }
        }
    });
    Ok((
        Tensor::from_slice(&out_shape, &vals)?.with_dtype_of(x)?,
        Tensor::from_slice(&out_shape, &idxs)?,
    ))
}

/// Re-labels a tensor built from a storage-compatible Rust type with the dtype of `like`
/// (e.g. `u8` data as bool).
trait WithDtype: Sized {
    fn with_dtype_of(self, like: &Tensor) -> Result<Tensor>;
}

impl WithDtype for Tensor {
    fn with_dtype_of(self, like: &Tensor) -> Result<Tensor> {
        if self.dtype() == like.dtype() {
            return Ok(self);
        }
        Tensor::from_bytes(like.dtype(), self.shape(), self.bytes()?)
    }
}

impl Op for TopK {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "TopK")?;
        let k = match self.attr_k {
            Some(k) => k,
            None => {
                let kv = ints_of(tensor_in(inputs, 1, "TopK")?, "TopK: input 'K'")?;
                *kv.first()
                    .ok_or_else(|| Error::InvalidArgument("TopK: input 'K' is empty".into()))?
            }
        };
        let axis = axis_in(self.axis, x.rank(), "TopK")?;
        let n = x.shape()[axis];
        if k < 0 || k as usize > n {
            return Err(Error::InvalidArgument(format!(
                "TopK: k = {k} is out of range for axis {axis} of size {n}"
            )));
        }
        let (v, i) = dispatch_numeric!(x.dtype(), T => topk_typed::<T>(ctx.pool, x, axis, k as usize, self.largest),
            Err(Error::UnsupportedDtype(format!("TopK: element type {} is not supported", x.dtype()))))?;
        debug_assert_eq!(i.dtype(), DType::Int64);
        Ok(vec![v.into(), i.into()])
    }
}

pub fn build_topk(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_k = if ctx.opset < 10 {
        Some(
            ctx.attr_opt_i("k")?
                .ok_or_else(|| ctx.invalid("attribute 'k' is required"))?,
        )
    } else {
        None
    };
    Ok(Box::new(TopK {
        axis: ctx.attr_i("axis", -1)?,
        largest: ctx.attr_i("largest", 1)? != 0,
        attr_k,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn topk() {
        let x = Tensor::from_slice(&[2, 4], &[1f32, 3., 3., 2., 5., 4., 6., 0.]).unwrap();
        let r = run("TopK", 11, vec![], vec![x.clone(), i64s(&[2])], 2).unwrap();
        assert_eq!(floats(r[0].as_tensor().unwrap()), vec![3., 3., 6., 5.]);
        assert_eq!(ints(r[1].as_tensor().unwrap()), vec![1, 2, 2, 0]);
        let r = run(
            "TopK",
            11,
            vec![("largest", AttrValue::Int(0)), ("axis", AttrValue::Int(0))],
            vec![x.clone(), i64s(&[1])],
            2,
        )
        .unwrap();
        assert_eq!(floats(r[0].as_tensor().unwrap()), vec![1., 3., 3., 0.]);
        assert_eq!(ints(r[1].as_tensor().unwrap()), vec![0, 0, 0, 1]);
        let r = run(
            "TopK",
            1,
            vec![("k", AttrValue::Int(1))],
            vec![x.clone()],
            2,
        )
        .unwrap();
        assert_eq!(r[0].as_tensor().unwrap().shape(), &[2, 1]);
        assert!(run("TopK", 11, vec![], vec![x, i64s(&[5])], 2).is_err());
        let i = Tensor::from_slice(&[3], &[2i64, 9, 2]).unwrap();
        let r = run("TopK", 11, vec![], vec![i, i64s(&[3])], 2).unwrap();
        assert_eq!(ints(r[0].as_tensor().unwrap()), vec![9, 2, 2]);
        assert_eq!(ints(r[1].as_tensor().unwrap()), vec![1, 0, 2]);
    }

    /// Enough lines to be split over the two threads of the test pool (both paths), each
    /// against its own sort.
    #[test]
    fn lines_split_over_threads_match_a_sort() {
        let (rows, n) = (400usize, 100usize);
        let v: Vec<f32> = (0..rows * n).map(|i| ((i * 7919) % 1009) as f32 * 0.5).collect();
        let x = Tensor::from_slice(&[rows, n], &v).unwrap();
        for k in [3usize, 40] {
            let r = run("TopK", 11, vec![], vec![x.clone(), i64s(&[k as i64])], 2).unwrap();
            let (gv, gi) = (r[0].as_tensor().unwrap().as_slice::<f32>().unwrap(), r[1].as_tensor().unwrap().as_slice::<i64>().unwrap());
            for row in 0..rows {
                let mut all: Vec<(f32, usize)> = (0..n).map(|i| (v[row * n + i], i)).collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                for j in 0..k {
                    assert_eq!((gv[row * k + j], gi[row * k + j]), (all[j].0, all[j].1 as i64), "k {k} row {row} [{j}]");
                }
            }
        }
    }

    /// The scanning path (k up to 32) against a full sort in the same total order: ties keep
    /// the lower index, NaN sorts above +inf for largest, both directions, an inner axis.
    #[test]
    fn small_k_scan_matches_a_full_sort() {
        // An inner axis (strided lines), then the last axis (contiguous lines: 16 values at a
        // time against the k-th best on AVX-512).
        for (pre, n, post) in [(3usize, 200usize, 2usize), (4, 203, 1)] {
        let mut v: Vec<f32> = (0..pre * n * post).map(|i| ((i * 7919) % 23) as f32 - 11.0).collect();
        v[17] = f32::NAN;
        v[305] = f32::INFINITY;
        v[410] = f32::NEG_INFINITY;
        v[620] = f32::NAN;
        let x = Tensor::from_slice(&[pre, n, post], &v).unwrap();
        for largest in [1i64, 0] {
            for k in [1usize, 5, 32, 33] {
                let r = run("TopK", 11, vec![("axis", AttrValue::Int(1)), ("largest", AttrValue::Int(largest))], vec![x.clone(), i64s(&[k as i64])], 2).unwrap();
                let (gv, gi) = (r[0].as_tensor().unwrap().as_slice::<f32>().unwrap(), r[1].as_tensor().unwrap().as_slice::<i64>().unwrap());
                for p in 0..pre {
                    for q in 0..post {
                        let mut all: Vec<(f32, usize)> = (0..n).map(|i| (v[(p * n + i) * post + q], i)).collect();
                        all.sort_by(|a, b| if largest == 1 { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) }.then(a.1.cmp(&b.1)));
                        for (j, &(wv, wi)) in all.iter().take(k).enumerate() {
                            let o = (p * k + j) * post + q;
                            assert_eq!((gv[o].to_bits(), gi[o]), (wv.to_bits(), wi as i64), "largest {largest} k {k} row ({p},{q}) #{j}");
                        }
                    }
                }
            }
        }
        }
    }
}
