//! Helpers shared by operator families: broadcasting, axes, strided iteration.

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};

/// The numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(Error::ShapeMismatch(format!("shapes {a:?} and {b:?} cannot be broadcast together")));
        };
    }
    Ok(out)
}

/// Broadcast of many shapes.
pub fn broadcast_all(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = broadcast_shapes(&out, s)?;
    }
    Ok(out)
}

/// Row-major strides (in elements) of `shape`.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of `shape` viewed as broadcast to `out` (0 where broadcast).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides_of(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| if i < off || shape[i - off] == 1 { 0 } else { st[i - off] })
        .collect()
}

/// Normalize a possibly negative axis for rank `rank` (axis in `-rank..rank`).
pub fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) && !(r == 0 && a == 0) {
        return Err(Error::InvalidArgument(format!("{what}: axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// For every output element of a broadcast over `n` inputs, call `f(out_index, input_offsets)`.
/// The innermost dimension is iterated in a tight loop.
pub fn for_each_broadcast<const N: usize>(out: &[usize], strides: [&[usize]; N], mut f: impl FnMut(usize, [usize; N])) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let r = out.len();
    if r == 0 {
        f(0, [0; N]);
        return;
    }
    let inner = out[r - 1];
    let inner_st: [usize; N] = std::array::from_fn(|k| strides[k][r - 1]);
    let mut idx = vec![0usize; r];
    let mut base = [0usize; N];
    let mut o = 0;
    loop {
        for j in 0..inner {
            let offs: [usize; N] = std::array::from_fn(|k| base[k] + j * inner_st[k]);
            f(o + j, offs);
        }
        o += inner;
        if o >= total {
            break;
        }
        // Advance the outer index.
        let mut d = r - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                base[k] += strides[k][d];
            }
            if idx[d] < out[d] {
                break;
            }
            for k in 0..N {
                base[k] -= strides[k][d] * idx[d];
            }
            idx[d] = 0;
        }
    }
}

/// Elementwise binary operation with broadcasting: `out[i] = f(a[..], b[..])`.
pub fn binary_map<A: Element, B: Element, O: Element>(
    a: &Tensor,
    b: &Tensor,
    out_dtype: crate::tensor::DType,
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Tensor> {
    let out_shape = broadcast_shapes(a.shape(), b.shape())?;
    let av = a.as_slice::<A>()?;
    let bv = b.as_slice::<B>()?;
    Tensor::build::<O>(out_dtype, &out_shape, |o| {
        if a.shape() == b.shape() {
            for ((o, x), y) in o.iter_mut().zip(av).zip(bv) {
                *o = f(*x, *y);
            }
        } else if bv.len() == 1 {
            let y = bv[0];
            for (o, x) in o.iter_mut().zip(av) {
                *o = f(*x, y);
            }
        } else if av.len() == 1 {
            let x = av[0];
            for (o, y) in o.iter_mut().zip(bv) {
                *o = f(x, *y);
            }
        } else {
            let sa = broadcast_strides(a.shape(), &out_shape);
            let sb = broadcast_strides(b.shape(), &out_shape);
            for_each_broadcast(&out_shape, [&sa, &sb], |i, [ia, ib]| o[i] = f(av[ia], bv[ib]));
        }
        Ok(())
    })
}

/// Elementwise unary map into a new tensor of `out_dtype`.
pub fn unary_map<A: Element, O: Element>(a: &Tensor, out_dtype: crate::tensor::DType, f: impl Fn(A) -> O) -> Result<Tensor> {
    let av = a.as_slice::<A>()?;
    Tensor::build::<O>(out_dtype, a.shape(), |o| {
        for (o, x) in o.iter_mut().zip(av) {
            *o = f(*x);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
        let a = Tensor::from_slice(&[2, 1], &[1f32, 2.]).unwrap();
        let b = Tensor::from_slice(&[3], &[10f32, 20., 30.]).unwrap();
        let c = binary_map::<f32, f32, f32>(&a, &b, DType::Float32, |x, y| x + y).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.as_slice::<f32>().unwrap(), &[11., 21., 31., 12., 22., 32.]);
    }

    #[test]
    fn axes() {
        assert_eq!(norm_axis(-1, 3, "t").unwrap(), 2);
        assert!(norm_axis(3, 3, "t").is_err());
        assert!(norm_axis(-4, 3, "t").is_err());
    }
}
