//! Unique: distinct elements (or slices along an axis), sorted or in order of first
//! occurrence, with first indices, inverse indices and counts.

use super::concat::axis_in;
use super::elements::{dispatch_numeric, Num};
use super::gather::take;
use super::transpose::transpose;
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::cmp::Ordering;

struct Unique {
    sorted: bool,
    axis: Option<i64>,
}

/// Groups of equal rows: (first index of each group in output order, inverse, counts).
fn group_rows<T>(
    rows: &[&[T]],
    cmp: impl Fn(&T, &T) -> Ordering,
    sorted: bool,
) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let row_cmp = |a: &[T], b: &[T]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| cmp(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| row_cmp(rows[a], rows[b]).then(a.cmp(&b)));
    // Groups in sorted order: (first index, members).
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in &order {
        match groups.last_mut() {
            Some((first, members)) if row_cmp(rows[*first], rows[i]) == Ordering::Equal => {
                members.push(i)
            }
            _ => groups.push((i, vec![i])),
        }
    }
    if !sorted {
        groups.sort_by_key(|g| g.0);
    }
    let mut inverse = vec![0i64; rows.len()];
    for (g, (_, members)) in groups.iter().enumerate() {
        for &m in members {
            inverse[m] = g as i64;
        }
    }
    let firsts = groups.iter().map(|g| g.0).collect();
    let counts = groups.iter().map(|g| g.1.len() as i64).collect();
    (firsts, inverse, counts)
}

fn rows_of<T>(v: &[T], n: usize) -> Vec<&[T]> {
    let w = if n == 0 { 0 } else { v.len() / n };
    (0..n).map(|i| &v[i * w..(i + 1) * w]).collect()
}

fn group_typed<T: Num>(
    t: &Tensor,
    n: usize,
    sorted: bool,
) -> Result<(Vec<usize>, Vec<i64>, Vec<i64>)> {
    let v = t.as_slice::<T>()?;
    Ok(group_rows(&rows_of(v, n), |a, b| a.total_cmp(b), sorted))
}

impl Op for Unique {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x0 = tensor_in(inputs, 0, "Unique")?;
        let (x, axis) = match self.axis {
            Some(a) => (x0.clone(), axis_in(a, x0.rank(), "Unique")?),
            None => (x0.reshaped(&[x0.len()])?, 0),
        };
        // Rows along `axis`, made contiguous by moving the axis first.
        let mut perm: Vec<usize> = vec![axis];
        perm.extend((0..x.rank()).filter(|&d| d != axis));
        let moved = transpose(&x, &perm, Some(ctx.pool))?;
        let n = x.shape()[axis];
        let (firsts, inverse, counts) = if x.dtype() == DType::String {
            let s = moved.strings()?;
            group_rows(&rows_of(s, n), |a, b| a.cmp(b), self.sorted)
        } else {
            dispatch_numeric!(x.dtype(), T => group_typed::<T>(&moved, n, self.sorted)?,
                return Err(Error::UnsupportedDtype(format!("Unique: element type {} is not supported", x.dtype()))))
        };
        let y = take(&x, axis, &firsts, &[firsts.len()], Some(ctx.pool), "Unique")?;
        let idx: Vec<i64> = firsts.iter().map(|&i| i as i64).collect();
        Ok(vec![
            y.into(),
            Tensor::from_slice(&[idx.len()], &idx)?.into(),
            Tensor::from_slice(&[inverse.len()], &inverse)?.into(),
            Tensor::from_slice(&[counts.len()], &counts)?.into(),
        ])
    }
}

pub fn build_unique(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Unique {
        sorted: ctx.attr_i("sorted", 1)? != 0,
        axis: ctx.attr_opt_i("axis")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn unique_flat() {
        // numpy/onnx example: [2, 1, 1, 3, 4, 3]
        let x = Tensor::from_slice(&[6], &[2f32, 1., 1., 3., 4., 3.]).unwrap();
        let r = run("Unique", 11, vec![], vec![x.clone()], 4).unwrap();
        let t: Vec<&Tensor> = r.iter().map(|v| v.as_tensor().unwrap()).collect();
        assert_eq!(floats(t[0]), vec![1., 2., 3., 4.]);
        assert_eq!(ints(t[1]), vec![1, 0, 3, 4]);
        assert_eq!(ints(t[2]), vec![1, 0, 0, 2, 3, 2]);
        assert_eq!(ints(t[3]), vec![2, 1, 2, 1]);
        let r = run(
            "Unique",
            11,
            vec![("sorted", AttrValue::Int(0))],
            vec![x],
            4,
        )
        .unwrap();
        assert_eq!(floats(r[0].as_tensor().unwrap()), vec![2., 1., 3., 4.]);
        assert_eq!(ints(r[2].as_tensor().unwrap()), vec![0, 1, 1, 2, 3, 2]);
    }

    #[test]
    fn unique_axis() {
        // onnx example: [[1,0,0],[1,0,0],[2,3,4]], axis 0
        let x = Tensor::from_slice(&[3, 3], &[1f32, 0., 0., 1., 0., 0., 2., 3., 4.]).unwrap();
        let r = run("Unique", 11, vec![("axis", AttrValue::Int(0))], vec![x], 4).unwrap();
        let y = r[0].as_tensor().unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(floats(y), vec![1., 0., 0., 2., 3., 4.]);
        assert_eq!(ints(r[3].as_tensor().unwrap()), vec![2, 1]);
        let s = strs(&[3], &["b", "a", "b"]);
        let r = run("Unique", 11, vec![], vec![s], 4).unwrap();
        assert_eq!(texts(r[0].as_tensor().unwrap()), vec!["a", "b"]);
    }
}
