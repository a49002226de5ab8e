//! Broadcasting copies: Expand, and Tile (an Expand of an interleaved reshape).

use super::constant::dims_of;
use super::elements::{apply_move, ints_of, par_rows, walk_offsets, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::ops::common::{broadcast_shapes, broadcast_strides};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// Output rows of `row` elements: copied from the input when the innermost (merged) axis is
/// not broadcast, filled with one input element when it is.
struct BroadcastKernel<'a> {
    walk_shape: &'a [usize],
    walk_strides: &'a [isize],
    row: usize,
    row_broadcast: bool,
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for BroadcastKernel<'_> {
    // Every output element is written (a row copy or fill each).
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let row = self.row;
        let one_thread = self.pool.is_none_or(|p| p.threads() <= 1) || dst.len() < super::elements::PAR_MIN_ELEMS;
        if one_thread && self.walk_strides.contains(&0) {
            // Repeated blocks (Tile, Expand of a middle axis) are built once and copied whole,
            // not row by row.
            self.fill_block(src, 0, 0, dst);
            return Ok(());
        }
        par_rows(self.pool, dst, row, |r0, chunk| {
            let rows = chunk.len() / row;
            walk_offsets(
                self.walk_shape,
                self.walk_strides,
                0,
                r0,
                r0 + rows,
                |k, off| {
                    let o = (k - r0) * row;
                    if self.row_broadcast {
                        chunk[o..o + row].fill(src[off].clone());
                    } else {
                        chunk[o..o + row].clone_from_slice(&src[off..off + row]);
                    }
                },
            );
            Ok(())
        })
    }
}

impl BroadcastKernel<'_> {
    /// Fill `dst`, the output block of walk axes `level..` at source offset `off`: a broadcast
    /// axis fills its first sub-block and copies it to the others.
    fn fill_block<T: Elem>(&self, src: &[T], level: usize, off: usize, dst: &mut [T]) {
        if level == self.walk_shape.len() {
            if self.row_broadcast {
                dst.fill(src[off].clone());
            } else {
                dst.clone_from_slice(&src[off..off + self.row]);
            }
            return;
        }
        let (n, stride) = (self.walk_shape[level], self.walk_strides[level]);
        let sub = dst.len() / n.max(1);
        if stride == 0 {
            let (first, rest) = dst.split_at_mut(sub);
            self.fill_block(src, level + 1, off, first);
            for d in rest.chunks_exact_mut(sub.max(1)) {
                d.clone_from_slice(first);
            }
        } else {
            for (i, d) in dst.chunks_exact_mut(sub.max(1)).enumerate() {
                self.fill_block(src, level + 1, (off as isize + i as isize * stride) as usize, d);
            }
        }
    }
}

/// Broadcasts `x` to `out_shape` (which must be a valid broadcast target of `x`'s shape).
pub fn broadcast_to(x: &Tensor, out_shape: &[usize], pool: Option<&ThreadPool>) -> Result<Tensor> {
    if x.shape() == out_shape {
        return Ok(x.clone());
    }
    let n: usize = out_shape.iter().product();
    if n == 0 {
        return Tensor::zeros(x.dtype(), out_shape);
    }
    if x.len() == n {
        // Only size-1 axes were added: same data.
        return x.reshaped(out_shape);
    }
    let st = broadcast_strides(x.shape(), out_shape);
    // Merge adjacent axes that are both broadcast or both copied; drop size-1 output axes.
    let mut shape: Vec<usize> = Vec::new();
    let mut strides: Vec<isize> = Vec::new();
    let mut bcast: Vec<bool> = Vec::new();
    for (d, &o) in out_shape.iter().enumerate() {
        if o == 1 {
            continue;
        }
        let b = st[d] == 0;
        match (shape.last_mut(), bcast.last(), strides.last_mut()) {
            (Some(ls), Some(&lb), Some(lst)) if lb == b => {
                *ls *= o;
                if !b {
                    *lst = st[d] as isize;
                }
            }
            _ => {
                shape.push(o);
                strides.push(st[d] as isize);
                bcast.push(b);
            }
        }
    }
    let last = shape.len() - 1;
    let k = BroadcastKernel {
        walk_shape: &shape[..last],
        walk_strides: &strides[..last],
        row: shape[last],
        row_broadcast: bcast[last],
        pool,
    };
    apply_move("Expand", x.dtype(), &[x], out_shape, &k)
}

/// Expand.
struct Expand;

impl Op for Expand {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Expand")?;
        let shape = dims_of(tensor_in(inputs, 1, "Expand")?, "Expand: input 'shape'")?;
        let out = broadcast_shapes(x.shape(), &shape).map_err(|_| {
            Error::ShapeMismatch(format!(
                "Expand: input shape {:?} cannot expand to {shape:?}",
                x.shape()
            ))
        })?;
        Ok(vec![broadcast_to(x, &out, Some(ctx.pool))?.into()])
    }
}

pub fn build_expand(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Expand))
}

/// Tile.
struct Tile;

impl Op for Tile {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Tile")?;
        let reps = ints_of(tensor_in(inputs, 1, "Tile")?, "Tile: input 'repeats'")?;
        if reps.len() != x.rank() {
            return Err(Error::InvalidArgument(format!(
                "Tile: repeats {reps:?} must have one entry per axis of shape {:?}",
                x.shape()
            )));
        }
        let mut inter = Vec::with_capacity(2 * x.rank());
        let mut target = Vec::with_capacity(2 * x.rank());
        let mut out_shape = Vec::with_capacity(x.rank());
        for (&d, &r) in x.shape().iter().zip(&reps) {
            let r = usize::try_from(r)
                .map_err(|_| Error::InvalidArgument(format!("Tile: negative repeat {r}")))?;
            inter.extend([1, d]);
            target.extend([r, d]);
            out_shape.push(r * d);
        }
        let t = broadcast_to(&x.reshaped(&inter)?, &target, Some(ctx.pool))?;
        Ok(vec![t.reshaped(&out_shape)?.into()])
    }
}

pub fn build_tile(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Tile))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn expand() {
        let x = iota(&[3, 1]);
        let r = run1("Expand", 13, vec![], vec![x.clone(), i64s(&[2, 1, 2])]);
        assert_eq!(r.shape(), &[2, 3, 2]);
        assert_eq!(
            floats(&r),
            vec![0., 0., 1., 1., 2., 2., 0., 0., 1., 1., 2., 2.]
        );
        let y = iota(&[1, 3]);
        let r = run1("Expand", 13, vec![], vec![y, i64s(&[2, 1])]);
        assert_eq!(floats(&r), vec![0., 1., 2., 0., 1., 2.]);
        let m = iota(&[2, 1, 1, 3]);
        let r = run1("Expand", 13, vec![], vec![m, i64s(&[2, 2, 2, 3])]);
        assert_eq!(
            floats(&r)[..12],
            [0., 1., 2., 0., 1., 2., 0., 1., 2., 0., 1., 2.]
        );
        assert_eq!(floats(&r)[12..15], [3., 4., 5.]);
        assert!(run("Expand", 13, vec![], vec![x, i64s(&[2, 1])], 1).is_err());
        let s = strs(&[1], &["a"]);
        assert_eq!(
            texts(&run1("Expand", 13, vec![], vec![s, i64s(&[3])])),
            vec!["a", "a", "a"]
        );
    }

    #[test]
    fn repeated_blocks_match_the_definition() {
        // Tile and Expand with broadcast axes between copied ones (blocks built once and
        // copied), small (one thread) and large (split over the pool), against indexing.
        let unravel = |mut i: usize, dims: &[usize]| -> Vec<usize> {
            let mut v = vec![0; dims.len()];
            for a in (0..dims.len()).rev() {
                v[a] = i % dims[a];
                i /= dims[a];
            }
            v
        };
        let flat = |idx: &[usize], dims: &[usize]| idx.iter().zip(dims).fold(0, |acc, (i, d)| acc * d + i);
        for (shape, reps) in [(vec![2usize, 3, 5, 7], vec![2usize, 1, 3, 2]), (vec![1, 64, 28, 28], vec![1, 1, 2, 2]), (vec![3, 1, 4], vec![1, 5, 1])] {
            let x = iota(&shape);
            let xv = floats(&x);
            let r = run1("Tile", 13, vec![], vec![x, i64s(&reps.iter().map(|v| *v as i64).collect::<Vec<_>>())]);
            let out: Vec<usize> = shape.iter().zip(&reps).map(|(d, r)| d * r).collect();
            assert_eq!(r.shape(), &out[..]);
            for (i, v) in floats(&r).iter().enumerate() {
                let src: Vec<usize> = unravel(i, &out).iter().zip(&shape).map(|(o, d)| o % d).collect();
                assert_eq!(*v, xv[flat(&src, &shape)], "Tile {shape:?} x {reps:?} [{i}]");
            }
        }
        for (shape, target) in [(vec![3usize, 1, 4, 1], vec![2usize, 3, 5, 4, 6]), (vec![1, 64, 1, 1], vec![1, 64, 56, 56]), (vec![1, 1, 200], vec![2, 300, 200])] {
            let x = iota(&shape);
            let xv = floats(&x);
            let r = run1("Expand", 13, vec![], vec![x, i64s(&target.iter().map(|v| *v as i64).collect::<Vec<_>>())]);
            assert_eq!(r.shape(), &target[..]);
            let pad = target.len() - shape.len();
            for (i, v) in floats(&r).iter().enumerate() {
                let idx = unravel(i, &target);
                let src: Vec<usize> = shape.iter().enumerate().map(|(a, d)| if *d == 1 { 0 } else { idx[pad + a] }).collect();
                assert_eq!(*v, xv[flat(&src, &shape)], "Expand {shape:?} -> {target:?} [{i}]");
            }
        }
    }

    #[test]
    fn tile() {
        let x = iota(&[2, 2]);
        let r = run1("Tile", 13, vec![], vec![x.clone(), i64s(&[2, 1])]);
        assert_eq!(floats(&r), vec![0., 1., 2., 3., 0., 1., 2., 3.]);
        let r = run1("Tile", 13, vec![], vec![x.clone(), i64s(&[1, 2])]);
        assert_eq!(floats(&r), vec![0., 1., 0., 1., 2., 3., 2., 3.]);
        assert!(run("Tile", 13, vec![], vec![x, i64s(&[2])], 1).is_err());
    }
}
