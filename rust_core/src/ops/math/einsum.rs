//! Einsum: parses the equation once (explicit or implicit output, `...` broadcasting, repeated
//! labels for diagonals). Two float operands contracted as a (batched) matrix product — the
//! attention and projection einsums of exported transformers — run as transposes around the
//! batched GEMM; any other equation by a direct loop over output and summed indices,
//! accumulating in f64 (i64 for integers).

use super::dispatch::Num;
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::nn::float_io::is_compute_float;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// One operand's labels; `None` marks the ellipsis.
type Term = Vec<Option<u8>>;

struct Einsum {
    inputs: Vec<Term>,
    /// Explicit output labels (None: implicit form).
    output: Option<Term>,
    label: String,
}

fn parse_term(s: &str, what: &str) -> std::result::Result<Term, String> {
    let mut t = Vec::new();
    let b = s.trim().as_bytes();
    let mut i = 0;
    let mut seen_ellipsis = false;
    while i < b.len() {
        match b[i] {
            b'.' => {
                if b.get(i..i + 3) != Some(b"...") || seen_ellipsis {
                    return Err(format!("bad ellipsis in {what} '{s}'"));
                }
                seen_ellipsis = true;
                t.push(None);
                i += 3;
            }
            c if c.is_ascii_alphabetic() => {
                t.push(Some(c));
                i += 1;
            }
            b' ' => i += 1,
            c => return Err(format!("unexpected character '{}' in {what} '{s}'", c as char)),
        }
    }
    Ok(t)
}

impl Einsum {
    /// Parse `equation` (`label` names the node in errors).
    fn parse(eq: &str, label: String) -> std::result::Result<Einsum, String> {
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq, None),
        };
        let inputs = lhs.split(',').map(|t| parse_term(t, "input term")).collect::<std::result::Result<Vec<_>, _>>()?;
        let output = rhs.map(|r| parse_term(r, "output term")).transpose()?;
        if let Some(o) = &output {
            for l in o.iter().flatten() {
                if !inputs.iter().any(|t| t.contains(&Some(*l))) {
                    return Err(format!("output label '{}' does not appear in any input", *l as char));
                }
            }
        }
        Ok(Einsum { inputs, output, label })
    }
}

pub fn build_einsum(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let eq = ctx.attr_s("equation", "")?;
    Ok(Box::new(Einsum::parse(&eq, ctx.node.describe()).map_err(|e| ctx.invalid(e))?))
}

/// Labels as u32: letters by their code, ellipsis dims as 256 + position from the right.
fn expand(term: &Term, rank: usize, label: &str) -> Result<Vec<u32>> {
    let letters = term.iter().filter(|l| l.is_some()).count();
    let has_ell = term.iter().any(|l| l.is_none());
    if letters > rank || (!has_ell && letters != rank) {
        return Err(shape_err!("{label}: term with {letters} labels does not fit an operand of rank {rank}"));
    }
    let ell = rank - letters;
    let mut out = Vec::with_capacity(rank);
    for l in term {
        match l {
            Some(c) => out.push(*c as u32),
            None => out.extend((0..ell).map(|k| 256 + (ell - 1 - k) as u32)),
        }
    }
    Ok(out)
}

/// Two float operands whose labels are each batch (both operands and the output), row (first
/// operand and output), column (second and output) or contracted (both operands, not the
/// output), no label repeated within a term and no size-1 broadcasting: the operands are
/// transposed to `[batch, rows, depth]` and `[batch, depth, cols]`, multiplied by the batched
/// GEMM, and the product transposed to the output's label order. `None` when the equation is
/// not of that form (the direct loop then evaluates it).
fn contraction(e: &Einsum, ts: &[&Tensor], pool: &ThreadPool) -> Result<Option<Tensor>> {
    if ts.len() != 2 || !is_compute_float(ts[0].dtype()) {
        return Ok(None);
    }
    let label = &e.label;
    let (ta, tb) = (expand(&e.inputs[0], ts[0].rank(), label)?, expand(&e.inputs[1], ts[1].rank(), label)?);
    let distinct = |t: &[u32]| t.iter().enumerate().all(|(i, l)| !t[..i].contains(l));
    if !distinct(&ta) || !distinct(&tb) {
        return Ok(None);
    }
    let out: Vec<u32> = match &e.output {
        Some(o) => {
            let max_ell = ta.iter().chain(&tb).filter(|l| **l >= 256).map(|l| l - 255).max().unwrap_or(0);
            let mut v = Vec::new();
            for l in o {
                match l {
                    Some(c) => v.push(*c as u32),
                    None => v.extend((0..max_ell).rev().map(|k| 256 + k)),
                }
            }
            v
        }
        // The implicit form (letters used once, sorted, after the ellipsis) is left to the loop.
        None => return Ok(None),
    };
    if !distinct(&out) {
        return Ok(None);
    }
    let (sa, sb) = (ts[0].shape(), ts[1].shape());
    let size = |t: &[u32], s: &[usize], l: u32| t.iter().position(|k| *k == l).map(|i| s[i]);
    let (mut batch, mut rows, mut cols, mut depth) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &l in &out {
        match (size(&ta, sa, l), size(&tb, sb, l)) {
            (Some(x), Some(y)) if x == y => batch.push(l),
            (Some(_), None) => rows.push(l),
            (None, Some(_)) => cols.push(l),
            _ => return Ok(None),
        }
    }
    for &l in &ta {
        if !out.contains(&l) {
            match size(&tb, sb, l) {
                Some(y) if Some(y) == size(&ta, sa, l) => depth.push(l),
                _ => return Ok(None),
            }
        }
    }
    if tb.iter().any(|l| !out.contains(l) && !depth.contains(l)) {
        return Ok(None);
    }
    let perm = |t: &[u32], order: &[&[u32]]| -> Vec<usize> { order.iter().flat_map(|g| g.iter()).map(|l| t.iter().position(|k| k == l).expect("label of this term")).collect() };
    let prod = |t: &[u32], s: &[usize], g: &[u32]| -> usize { g.iter().map(|l| size(t, s, *l).expect("label of this term")).product() };
    let (nb, m, k, n) = (prod(&ta, sa, &batch), prod(&ta, sa, &rows), prod(&ta, sa, &depth), prod(&tb, sb, &cols));
    let a = crate::ops::array::transpose::transpose(ts[0], &perm(&ta, &[&batch, &rows, &depth]), Some(pool))?.reshaped(&[nb, m, k])?;
    let b = crate::ops::array::transpose::transpose(ts[1], &perm(&tb, &[&batch, &depth, &cols]), Some(pool))?.reshaped(&[nb, k, n])?;
    let c = crate::ops::nn::matmul::float_matmul_tensors(pool, &a, &b, label)?;
    // The product's labels: batch, rows, cols; to the output order.
    let got: Vec<u32> = batch.iter().chain(&rows).chain(&cols).copied().collect();
    let got_shape: Vec<usize> = got.iter().map(|l| size(&ta, sa, *l).or(size(&tb, sb, *l)).expect("label of an operand")).collect();
    let c = c.reshaped(&got_shape)?;
    let to_out: Vec<usize> = out.iter().map(|l| got.iter().position(|k| k == l).expect("output label")).collect();
    Ok(Some(crate::ops::array::transpose::transpose(&c, &to_out, Some(pool))?))
}

fn compute<T: Num>(e: &Einsum, ts: &[&Tensor]) -> Result<Tensor> {
    let label = &e.label;
    let terms: Vec<Vec<u32>> = e.inputs.iter().zip(ts).map(|(t, x)| expand(t, x.rank(), label)).collect::<Result<_>>()?;
    // Size of every label (1 broadcasts).
    let mut sizes: Vec<(u32, usize)> = Vec::new();
    for (t, x) in terms.iter().zip(ts) {
        for (l, &d) in t.iter().zip(x.shape()) {
            match sizes.iter_mut().find(|(k, _)| k == l) {
                Some((_, s)) if *s == d || d == 1 => {}
                Some((_, s)) if *s == 1 => *s = d,
                Some((_, s)) => {
                    return Err(shape_err!("{label}: label sizes disagree ({} and {d})", *s));
                }
                None => sizes.push((*l, d)),
            }
        }
    }
    let size_of = |l: u32| sizes.iter().find(|(k, _)| *k == l).map(|(_, s)| *s).unwrap_or(1);
    // Output labels: explicit, or ellipsis dims then letters used once, alphabetically.
    let max_ell = terms.iter().flat_map(|t| t.iter()).filter(|l| **l >= 256).map(|l| l - 255).max().unwrap_or(0);
    let ell_labels: Vec<u32> = (0..max_ell).rev().map(|k| 256 + k).collect();
    let out_labels: Vec<u32> = match &e.output {
        Some(o) => {
            let mut v = Vec::new();
            for l in o {
                match l {
                    Some(c) => v.push(*c as u32),
                    None => v.extend(&ell_labels),
                }
            }
            v
        }
        None => {
            let mut letters: Vec<u32> = sizes
                .iter()
                .map(|(l, _)| *l)
                .filter(|l| *l < 256 && terms.iter().flat_map(|t| t.iter()).filter(|k| *k == l).count() == 1)
                .collect();
            letters.sort();
            let mut v = ell_labels.clone();
            v.extend(letters);
            v
        }
    };
    let sum_labels: Vec<u32> = sizes.iter().map(|(l, _)| *l).filter(|l| !out_labels.contains(l)).collect();
    let out_shape: Vec<usize> = out_labels.iter().map(|&l| size_of(l)).collect();
    let sum_shape: Vec<usize> = sum_labels.iter().map(|&l| size_of(l)).collect();
    // Per operand: stride of each output / summed label (0 when absent or broadcast).
    let stride_for = |t: &[u32], x: &Tensor, l: u32| -> usize {
        let st = crate::ops::common::strides_of(x.shape());
        t.iter().enumerate().filter(|(i, k)| **k == l && x.shape()[*i] != 1).map(|(i, _)| st[i]).sum()
    };
    let out_st: Vec<Vec<usize>> = terms.iter().zip(ts).map(|(t, x)| out_labels.iter().map(|&l| stride_for(t, x, l)).collect()).collect();
    let sum_st: Vec<Vec<usize>> = terms.iter().zip(ts).map(|(t, x)| sum_labels.iter().map(|&l| stride_for(t, x, l)).collect()).collect();
    let vals: Vec<Vec<f64>> = ts.iter().map(|x| Ok(x.as_slice::<T>()?.iter().map(|v| v.to_f64()).collect())).collect::<Result<_>>()?;
    let n_out = crate::tensor::checked_numel(&out_shape)?;
    let n_sum = crate::tensor::checked_numel(&sum_shape)?;
    let k = ts.len();
    Tensor::build::<T>(ts[0].dtype(), &out_shape, |o| {
        let mut oidx = vec![0usize; out_shape.len()];
        let mut obase = vec![0usize; k];
        for ov in o.iter_mut().take(n_out) {
            let mut acc = 0f64;
            let mut sidx = vec![0usize; sum_shape.len()];
            let mut off = obase.clone();
            for _ in 0..n_sum {
                let mut p = 1f64;
                for j in 0..k {
                    p *= vals[j][off[j]];
                }
                acc += p;
                advance(&mut sidx, &sum_shape, &mut off, &sum_st);
            }
            *ov = T::from_f64(acc);
            advance(&mut oidx, &out_shape, &mut obase, &out_st);
        }
        Ok(())
    })
}

/// Odometer step of `idx` over `shape`, keeping every operand's offset in step.
fn advance(idx: &mut [usize], shape: &[usize], off: &mut [usize], st: &[Vec<usize>]) {
    let mut d = idx.len();
    while d > 0 {
        d -= 1;
        idx[d] += 1;
        for (o, s) in off.iter_mut().zip(st) {
            *o += s[d];
        }
        if idx[d] < shape[d] {
            return;
        }
        for (o, s) in off.iter_mut().zip(st) {
            *o -= s[d] * idx[d];
        }
        idx[d] = 0;
    }
}

impl Op for Einsum {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        if inputs.len() != self.inputs.len() {
            return Err(invalid_arg!("{}: equation has {} operands, {} inputs given", self.label, self.inputs.len(), inputs.len()));
        }
        let ts = (0..inputs.len()).map(|i| tensor_in(inputs, i, &self.label)).collect::<Result<Vec<_>>>()?;
        let d = ts[0].dtype();
        if let Some(t) = ts.iter().find(|t| t.dtype() != d) {
            return Err(dtype_err!("{}: inputs have different element types ({d} and {})", self.label, t.dtype()));
        }
        if let Some(out) = contraction(self, &ts, ctx.pool)? {
            return Ok(vec![out.into()]);
        }
        let out = with_numeric!(d, T => compute::<T>(self, &ts)?,
            _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label)));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;

    #[test]
    fn contractions_match_the_direct_loop() {
        // Equations run as transposes around the batched GEMM, against the direct f64 loop;
        // the others (repeated labels, implicit output, labels summed within one operand,
        // size-1 broadcasting) must decline and still be computed.
        let pool = crate::executor::pool::ThreadPool::new(2);
        let cases: &[(&str, &[usize], &[usize], bool)] = &[
            ("bij,bjk->bik", &[3, 5, 7], &[3, 7, 4], true),
            ("bhqd,bhkd->bhqk", &[1, 3, 9, 8], &[1, 3, 11, 8], true),
            ("bhqk,bhkd->bhqd", &[2, 2, 5, 6], &[2, 2, 6, 8], true),
            ("ij,kj->ik", &[5, 7], &[6, 7], true),
            ("bnd,dh->bnh", &[2, 9, 16], &[16, 5], true),
            ("...ij,...jk->...ik", &[2, 3, 4, 5], &[3, 5, 6], true),
            ("abc,cd->dba", &[2, 3, 4], &[4, 5], true),
            ("i,i->", &[7], &[7], true),
            ("i,j->ij", &[3], &[4], true),
            ("ii,ij->j", &[3, 3], &[3, 4], false),
            ("ij,jk", &[2, 3], &[3, 4], false),
            ("ij,ik->i", &[2, 3], &[2, 4], false),
            ("bij,bjk->bik", &[1, 5, 7], &[3, 7, 4], false),
        ];
        for &(eq, sa, sb, fast) in cases {
            let n = |s: &[usize]| s.iter().product::<usize>();
            let a = t_f32(sa, &(0..n(sa)).map(|i| ((i * 37) % 17) as f32 * 0.25 - 2.0).collect::<Vec<_>>());
            let b = t_f32(sb, &(0..n(sb)).map(|i| ((i * 53) % 13) as f32 * 0.5 - 3.0).collect::<Vec<_>>());
            let e = super::Einsum::parse(eq, "Einsum".into()).unwrap();
            let got = super::contraction(&e, &[&a, &b], &pool).unwrap();
            assert_eq!(got.is_some(), fast, "{eq}: contraction taken {}", got.is_some());
            let want = super::compute::<f32>(&e, &[&a, &b]).unwrap();
            let via_op = run1("Einsum", &[("equation", string(eq))], &[a.clone(), b.clone()]);
            assert_eq!(via_op.shape(), want.shape(), "{eq}");
            for (g, w) in f32s(&via_op).iter().zip(f32s(&want)) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{eq}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn matmul_transpose_trace_batch() {
        let a = t_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t_f32(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let eq = |e: &str| ("equation", string(e));
        let c = run1("Einsum", &[eq("ij,jk->ik")], &[a.clone(), b.clone()]);
        assert_eq!(c.shape(), &[2, 2]);
        assert_eq!(f32s(&c), vec![4., 5., 10., 11.]);
        // Implicit output: ik sorted.
        assert_eq!(f32s(&run1("Einsum", &[eq("ij,jk")], &[a.clone(), b])), vec![4., 5., 10., 11.]);
        let t = run1("Einsum", &[eq("ij->ji")], &[a.clone()]);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(f32s(&t), vec![1., 4., 2., 5., 3., 6.]);
        let sq = t_f32(&[2, 2], &[1., 2., 3., 4.]);
        assert_eq!(f32s(&run1("Einsum", &[eq("ii")], &[sq.clone()])), vec![5.]);
        assert_eq!(f32s(&run1("Einsum", &[eq("ii->i")], &[sq.clone()])), vec![1., 4.]);
        assert_eq!(f32s(&run1("Einsum", &[eq("ij->")], &[a.clone()])), vec![21.]);
        let x = t_f32(&[2, 1, 2], &[1., 2., 3., 4.]);
        let y = t_f32(&[2, 2, 1], &[1., 1., 2., 0.]);
        let bm = run1("Einsum", &[eq("...ij,...jk->...ik")], &[x, y]);
        assert_eq!(bm.shape(), &[2, 1, 1]);
        assert_eq!(f32s(&bm), vec![3., 6.]);
        assert!(run("Einsum", &[eq("ij,jk->iz")], &[a.clone(), a]).is_err());
    }
}
