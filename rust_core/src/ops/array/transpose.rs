//! Transpose, and the operators that are transposes of a reshaped tensor: DepthToSpace,
//! SpaceToDepth.

use super::elements::{apply_move, par_rows, signed_strides, walk_offsets, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::transpose::transpose_block_u32;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// A transpose reduced to its essentials: size-1 axes dropped and runs of axes that stay
/// adjacent fused, so that NCHW->NHWC becomes a batched 2-D transpose.
struct Reduced {
    shape: Vec<usize>,
    perm: Vec<usize>,
}

fn reduce(shape: &[usize], perm: &[usize]) -> Reduced {
    // Drop size-1 axes, renumbering the remaining ones.
    let keep: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != 1).collect();
    let renum = |a: usize| keep.iter().position(|&k| k == a);
    let p1: Vec<usize> = perm.iter().filter_map(|&a| renum(a)).collect();
    let s1: Vec<usize> = keep.iter().map(|&a| shape[a]).collect();
    // Fuse input axes that appear consecutively in the output.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &a in &p1 {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap_or(&usize::MAX) + 1 == a => g.push(a),
            _ => groups.push(vec![a]),
        }
    }
    // Groups ordered by their first input axis give the fused input shape.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let shape: Vec<usize> = order
        .iter()
        .map(|&g| groups[g].iter().map(|&a| s1[a]).product())
        .collect();
    let perm: Vec<usize> = (0..groups.len())
        .map(|g| order.iter().position(|&o| o == g).unwrap_or(0))
        .collect();
    Reduced { shape, perm }
}

/// Moves elements from an input of (reduced) `shape` to the output ordered by `perm`.
struct TransposeKernel<'a> {
    shape: &'a [usize],
    perm: &'a [usize],
    pool: Option<&'a ThreadPool>,
}

const TILE: usize = 16;

impl MoveKernel for TransposeKernel<'_> {
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let r = self.shape.len();
        let in_st = signed_strides(self.shape);
        let out_shape: Vec<usize> = self.perm.iter().map(|&a| self.shape[a]).collect();
        // Input stride of each output axis.
        let st: Vec<isize> = self.perm.iter().map(|&a| in_st[a]).collect();
        let last = r - 1;
        let n_last = out_shape[last];
        if self.perm[last] == last {
            // Contiguous runs: copy whole rows.
            return par_rows(self.pool, dst, n_last, |r0, chunk| {
                let rows = chunk.len() / n_last;
                walk_offsets(
                    &out_shape[..last],
                    &st[..last],
                    0,
                    r0,
                    r0 + rows,
                    |k, off| {
                        let o = (k - r0) * n_last;
                        chunk[o..o + n_last].clone_from_slice(&src[off..off + n_last]);
                    },
                );
                Ok(())
            });
        }
        let j = self.perm.iter().position(|&a| a == last).unwrap_or(0);
        let s_last = st[last] as usize;
        if j + 1 == last {
            // Batched 2-D transpose: output rows are indexed by (outer, a), the input is
            // contiguous along a. Work in TILE x TILE blocks for cache locality.
            let n_a = out_shape[j];
            let outer_shape = &out_shape[..j];
            let outer_st = &st[..j];
            // 4-byte elements: each run of rows of one outer index as one register transpose.
            let any = |t: std::any::TypeId| t == std::any::TypeId::of::<T>();
            let words = any(std::any::TypeId::of::<f32>()) || any(std::any::TypeId::of::<i32>()) || any(std::any::TypeId::of::<u32>());
            return par_rows(self.pool, dst, n_last, |r0, chunk| {
                let rows = chunk.len() / n_last;
                if words {
                    // SAFETY: T is f32, i32 or u32 (checked above): same size, any bits valid.
                    let (s32, c32) = unsafe {
                        (
                            std::slice::from_raw_parts(src.as_ptr() as *const u32, src.len()),
                            std::slice::from_raw_parts_mut(chunk.as_mut_ptr() as *mut u32, chunk.len()),
                        )
                    };
                    let mut row = r0;
                    let mut done = true;
                    while row < r0 + rows {
                        let (outer, a0) = (row / n_a, row % n_a);
                        let a1 = n_a.min(a0 + (r0 + rows - row));
                        let mut base = 0usize;
                        walk_offsets(outer_shape, outer_st, 0, outer, outer + 1, |_, off| base = off);
                        if !transpose_block_u32(&s32[base + a0..], s_last, a1 - a0, n_last, &mut c32[(row - r0) * n_last..], n_last) {
                            done = false;
                            break;
                        }
                        row = row + a1 - a0;
                    }
                    if done {
                        return Ok(());
                    }
                }
                let mut row = r0;
                while row < r0 + rows {
                    let outer = row / n_a;
                    let a0 = row % n_a;
                    let a1 = (a0 + TILE).min(n_a).min(a0 + (r0 + rows - row));
                    let mut base = 0usize;
                    walk_offsets(outer_shape, outer_st, 0, outer, outer + 1, |_, off| {
                        base = off
                    });
                    let mut b0 = 0;
                    while b0 < n_last {
                        let b1 = (b0 + TILE).min(n_last);
                        for a in a0..a1 {
                            let o = (row - r0 + (a - a0)) * n_last;
                            let drow = &mut chunk[o + b0..o + b1];
                            for (b, d) in (b0..b1).zip(drow.iter_mut()) {
                                *d = src[base + a + b * s_last].clone();
                            }
                        }
                        b0 = b1;
                    }
                    row += a1 - a0;
                }
                Ok(())
            });
        }
        // General case: each output row reads the input with a fixed stride.
        par_rows(self.pool, dst, n_last, |r0, chunk| {
            let rows = chunk.len() / n_last;
            walk_offsets(
                &out_shape[..last],
                &st[..last],
                0,
                r0,
                r0 + rows,
                |k, off| {
                    let o = (k - r0) * n_last;
                    for (b, d) in chunk[o..o + n_last].iter_mut().enumerate() {
                        *d = src[off + b * s_last].clone();
                    }
                },
            );
            Ok(())
        })
    }
}

/// Transposes `x` by `perm` (validated by the caller). Returns the input itself (re-shaped,
/// no copy) when the permutation only moves size-1 axes.
pub fn transpose(x: &Tensor, perm: &[usize], pool: Option<&ThreadPool>) -> Result<Tensor> {
    let out_shape: Vec<usize> = perm.iter().map(|&a| x.shape()[a]).collect();
    let red = reduce(x.shape(), perm);
    if red.perm.len() <= 1 || red.perm.iter().enumerate().all(|(i, &p)| i == p) || x.is_empty() {
        return x.reshaped(&out_shape);
    }
    let k = TransposeKernel {
        shape: &red.shape,
        perm: &red.perm,
        pool,
    };
    apply_move("Transpose", x.dtype(), &[x], &out_shape, &k)
}

/// Checks that `perm` is a permutation of `0..rank`.
fn check_perm(perm: &[i64], rank: usize) -> Result<Vec<usize>> {
    if perm.len() != rank {
        return Err(Error::InvalidArgument(format!(
            "Transpose: perm {perm:?} has {} entries for rank {rank}",
            perm.len()
        )));
    }
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    for &p in perm {
        let a = if p < 0 { p + rank as i64 } else { p };
        if a < 0 || a >= rank as i64 || seen[a as usize] {
            return Err(Error::InvalidArgument(format!(
                "Transpose: perm {perm:?} is not a permutation of 0..{rank}"
            )));
        }
        seen[a as usize] = true;
        out.push(a as usize);
    }
    Ok(out)
}

/// Transpose (perm defaults to reversing the axes).
struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Op for Transpose {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Transpose")?;
        let perm = match &self.perm {
            Some(p) => check_perm(p, x.rank())?,
            None => (0..x.rank()).rev().collect(),
        };
        Ok(vec![transpose(x, &perm, Some(ctx.pool))?.into()])
    }
}

pub fn build_transpose(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let perm = ctx.attr_ints("perm")?;
    if let Some(p) = &perm {
        let mut s = p.clone();
        s.sort();
        if s.iter().enumerate().any(|(i, &v)| v != i as i64) {
            return Err(ctx.invalid(format!("attribute 'perm' {p:?} is not a permutation")));
        }
    }
    Ok(Box::new(Transpose { perm }))
}

/// DepthToSpace: [N, C, H, W] -> [N, C/(b*b), H*b, W*b], DCR or CRD ordering.
struct DepthToSpace {
    block: usize,
    crd: bool,
}

impl Op for DepthToSpace {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "DepthToSpace")?;
        let b = self.block;
        let [n, c, h, w] = dims4(x, "DepthToSpace")?;
        if c % (b * b) != 0 {
            return Err(Error::ShapeMismatch(format!(
                "DepthToSpace: channels {c} are not divisible by blocksize^2 = {}",
                b * b
            )));
        }
        let c2 = c / (b * b);
        let t = if self.crd {
            transpose(
                &x.reshaped(&[n, c2, b, b, h, w])?,
                &[0, 1, 4, 2, 5, 3],
                Some(ctx.pool),
            )?
        } else {
            transpose(
                &x.reshaped(&[n, b, b, c2, h, w])?,
                &[0, 3, 4, 1, 5, 2],
                Some(ctx.pool),
            )?
        };
        Ok(vec![t.reshaped(&[n, c2, h * b, w * b])?.into()])
    }
}

fn dims4(x: &Tensor, op: &str) -> Result<[usize; 4]> {
    match x.shape() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(Error::ShapeMismatch(format!(
            "{op}: input must be 4-D [N, C, H, W], got shape {s:?}"
        ))),
    }
}

fn blocksize(ctx: &BuildContext) -> Result<usize> {
    let b = ctx
        .attr_opt_i("blocksize")?
        .ok_or_else(|| ctx.invalid("attribute 'blocksize' is required"))?;
    if b <= 0 {
        return Err(ctx.invalid(format!("attribute 'blocksize' must be positive, got {b}")));
    }
    Ok(b as usize)
}

/// Whether attribute 'mode' is CRD (DCR by default).
fn crd_mode(ctx: &BuildContext) -> Result<bool> {
    let mode = ctx.attr_s("mode", "DCR")?;
    if mode != "DCR" && mode != "CRD" {
        return Err(ctx.invalid(format!("attribute 'mode' must be DCR or CRD, got '{mode}'")));
    }
    Ok(mode == "CRD")
}

pub fn build_depth_to_space(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(DepthToSpace {
        block: blocksize(ctx)?,
        crd: crd_mode(ctx)?,
    }))
}

/// SpaceToDepth: [N, C, H, W] -> [N, C*b*b, H/b, W/b], DCR or CRD ordering (opset 28).
struct SpaceToDepth {
    block: usize,
    crd: bool,
}

impl Op for SpaceToDepth {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "SpaceToDepth")?;
        let b = self.block;
        let [n, c, h, w] = dims4(x, "SpaceToDepth")?;
        if h % b != 0 || w % b != 0 {
            return Err(Error::ShapeMismatch(format!(
                "SpaceToDepth: height {h} and width {w} must be divisible by blocksize {b}"
            )));
        }
        if b == 2 && x.dtype() == crate::tensor::DType::Float32 && h > 0 && w > 0 {
            // Blocks of 2: each input row split into its even and odd columns, straight into
            // two output planes (the general 6-D transpose took 1.8x onnxruntime's time).
            let xv = x.as_slice::<f32>()?;
            let (oh, ow) = (h / 2, w / 2);
            let out = Tensor::build_uninit::<f32>(x.dtype(), &[n, c * 4, oh, ow], |o| {
                let op = crate::kernels::SendPtr(o.as_mut_ptr());
                ctx.pool.parallel_for(n * c, 1.max((1 << 14) / (h * w)), |p0, p1| {
                    for p in p0..p1 {
                        let (img, ch) = (p / c, p % c);
                        let plane = &xv[p * h * w..(p + 1) * h * w];
                        // Output channel of block offset (bh, bw).
                        let oc = |bh: usize, bw: usize| if self.crd { ch * 4 + bh * 2 + bw } else { (bh * 2 + bw) * c + ch };
                        for r in 0..h {
                            let (y, bh) = (r / 2, r % 2);
                            let at = |bw: usize| (img * c * 4 + oc(bh, bw)) * oh * ow + y * ow;
                            // SAFETY: row y of the planes of block (bh, 0) and (bh, 1) of input
                            // channel ch belong to this task alone.
                            let (even, odd) = unsafe { (op.slice(at(0), ow), op.slice(at(1), ow)) };
                            crate::kernels::conv::split_columns2(&plane[r * w..(r + 1) * w], even, odd);
                        }
                    }
                });
                Ok(())
            })?;
            return Ok(vec![out.into()]);
        }
        let perm: &[usize] = if self.crd {
            &[0, 1, 3, 5, 2, 4]
        } else {
            &[0, 3, 5, 1, 2, 4]
        };
        let t = transpose(
            &x.reshaped(&[n, c, h / b, b, w / b, b])?,
            perm,
            Some(ctx.pool),
        )?;
        Ok(vec![t.reshaped(&[n, c * b * b, h / b, w / b])?.into()])
    }
}

pub fn build_space_to_depth(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SpaceToDepth {
        block: blocksize(ctx)?,
        crd: crd_mode(ctx)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::graph::ir::AttrValue;

    /// Reference transpose, one element at a time.
    fn naive(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
        let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        let in_st = crate::ops::common::strides_of(shape);
        let n: usize = shape.iter().product();
        let out_st = crate::ops::common::strides_of(&out_shape);
        (0..n)
            .map(|k| {
                let mut off = 0;
                for (i, &p) in perm.iter().enumerate() {
                    off += (k / out_st[i]) % out_shape[i] * in_st[p];
                }
                x[off]
            })
            .collect()
    }

    #[test]
    fn transposes_match_naive() {
        let pool = ThreadPool::new(2);
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![3, 5], vec![1, 0]),
            (vec![2, 3, 4], vec![0, 2, 1]),
            (vec![2, 3, 4], vec![2, 1, 0]),
            (vec![2, 3, 4], vec![1, 2, 0]),
            (vec![1, 3, 1, 4], vec![3, 0, 2, 1]),
            (vec![2, 3, 4, 5], vec![0, 2, 3, 1]),
            (vec![2, 3, 4, 5], vec![0, 3, 1, 2]),
            (vec![2, 3, 4, 5], vec![0, 2, 1, 3]),
            (vec![2, 33, 17, 35], vec![0, 2, 3, 1]),
            (vec![4, 70, 300], vec![0, 2, 1]),
            (vec![300, 200], vec![1, 0]),
            (vec![2, 12, 50, 64], vec![0, 2, 1, 3]),
        ];
        for (shape, perm) in cases {
            let x = iota(&shape);
            let want = naive(&floats(&x), &shape, &perm);
            let got = transpose(&x, &perm, Some(&pool)).unwrap();
            assert_eq!(
                got.shape(),
                perm.iter()
                    .map(|&a| shape[a])
                    .collect::<Vec<_>>()
                    .as_slice()
            );
            assert_eq!(floats(&got), want, "shape {shape:?} perm {perm:?}");
        }
    }

    #[test]
    fn transpose_op_and_dtypes() {
        let x = iota(&[2, 3]);
        let r = run1("Transpose", 13, vec![], vec![x]);
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(floats(&r), vec![0., 3., 1., 4., 2., 5.]);
        let s = strs(&[2, 2], &["a", "b", "c", "d"]);
        let r = run1(
            "Transpose",
            13,
            vec![("perm", AttrValue::Ints(vec![1, 0]))],
            vec![s],
        );
        assert_eq!(texts(&r), vec!["a", "c", "b", "d"]);
        let b = Tensor::from_slice(&[2, 2], &[1u8, 0, 0, 0]).unwrap();
        let r = run1("Transpose", 13, vec![], vec![b]);
        assert_eq!(r.as_slice::<u8>().unwrap(), &[1, 0, 0, 0]);
        let i = Tensor::from_slice(&[1, 3], &[1i64, 2, 3]).unwrap();
        let r = run1("Transpose", 13, vec![], vec![i.clone()]);
        assert!(r.shares_data_with(&i));
        assert_eq!(r.shape(), &[3, 1]);
        assert!(run(
            "Transpose",
            13,
            vec![("perm", AttrValue::Ints(vec![0, 0]))],
            vec![iota(&[2, 2])],
            1
        )
        .is_err());
        assert!(run(
            "Transpose",
            13,
            vec![("perm", AttrValue::Ints(vec![0, 1, 2]))],
            vec![iota(&[2, 2])],
            1
        )
        .is_err());
        let e = Tensor::zeros(crate::DType::Float32, &[0, 3]).unwrap();
        assert_eq!(run1("Transpose", 13, vec![], vec![e]).shape(), &[3, 0]);
    }

    #[test]
    fn depth_space() {
        // numpy: x = arange(16).reshape(1,8,1,2), blocksize 2.
        let x = iota(&[1, 8, 1, 2]);
        let dcr = run1(
            "DepthToSpace",
            13,
            vec![("blocksize", AttrValue::Int(2))],
            vec![x.clone()],
        );
        assert_eq!(dcr.shape(), &[1, 2, 2, 4]);
        assert_eq!(
            floats(&dcr),
            vec![0., 4., 1., 5., 8., 12., 9., 13., 2., 6., 3., 7., 10., 14., 11., 15.]
        );
        let crd = run1(
            "DepthToSpace",
            13,
            vec![
                ("blocksize", AttrValue::Int(2)),
                ("mode", AttrValue::String(b"CRD".to_vec())),
            ],
            vec![x],
        );
        assert_eq!(
            floats(&crd),
            vec![0., 2., 1., 3., 4., 6., 5., 7., 8., 10., 9., 11., 12., 14., 13., 15.]
        );
        let back = run1(
            "SpaceToDepth",
            13,
            vec![("blocksize", AttrValue::Int(2))],
            vec![dcr],
        );
        assert_eq!(back.shape(), &[1, 8, 1, 2]);
        assert_eq!(floats(&back), (0..16).map(|v| v as f32).collect::<Vec<_>>());
        assert!(run(
            "SpaceToDepth",
            13,
            vec![("blocksize", AttrValue::Int(3))],
            vec![iota(&[1, 1, 4, 4])],
            1
        )
        .is_err());
    }

    #[test]
    fn space_to_depth_by_two_matches_the_transpose() {
        // f32 blocks of 2 take the row-splitting path; both orders, several images and channels,
        // rows wider than a vector.
        let (n, c, h, w) = (2usize, 3usize, 6usize, 42usize);
        let x = iota(&[n, c, h, w]);
        let xv = floats(&x);
        for (mode, perm) in [("DCR", [0usize, 3, 5, 1, 2, 4]), ("CRD", [0, 1, 3, 5, 2, 4])] {
            let got = run1("SpaceToDepth", 13, vec![("blocksize", AttrValue::Int(2)), ("mode", AttrValue::String(mode.as_bytes().to_vec()))], vec![x.clone()]);
            assert_eq!(got.shape(), &[n, c * 4, h / 2, w / 2]);
            assert_eq!(floats(&got), naive(&xv, &[n, c, h / 2, 2, w / 2, 2], &perm), "{mode}");
        }
    }
}
