//! Operators that only look at or change a shape, never copying data: Identity, Shape, Size,
//! Reshape, Flatten, Squeeze, Unsqueeze.

use super::elements::ints_of;
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// Identity: the input value itself (tensor, sequence or optional), shared, not copied.
struct Identity;

impl Op for Identity {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        match inputs.first().copied().flatten() {
            Some(v) => Ok(vec![v.clone()]),
            None => Err(Error::InvalidArgument(
                "Identity: input 0 is missing".into(),
            )),
        }
    }
}

pub fn build_identity(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Identity))
}

/// Shape (start/end since opset 15): the dimensions as a 1-D int64 tensor.
struct Shape {
    start: i64,
    end: Option<i64>,
}

fn clamp_bound(v: i64, rank: usize) -> usize {
    let r = rank as i64;
    let v = if v < 0 { v + r } else { v };
    v.clamp(0, r) as usize
}

impl Op for Shape {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Shape")?;
        let r = x.rank();
        let s = clamp_bound(self.start, r);
        let e = self.end.map(|e| clamp_bound(e, r)).unwrap_or(r).max(s);
        let dims: Vec<i64> = x.shape()[s..e].iter().map(|d| *d as i64).collect();
        Ok(vec![Tensor::from_slice(&[dims.len()], &dims)?.into()])
    }
}

pub fn build_shape(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Shape {
        start: ctx.attr_i("start", 0)?,
        end: ctx.attr_opt_i("end")?,
    }))
}

/// Size: the number of elements as an int64 scalar.
struct Size;

impl Op for Size {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Size")?;
        Ok(vec![Tensor::scalar(x.len() as i64).into()])
    }
}

pub fn build_size(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Size))
}

/// The output shape of Reshape: 0 copies the input dimension (unless `allowzero`), -1 is
/// inferred from the element count.
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 => {
                if infer.is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "Reshape: shape {spec:?} has more than one -1"
                    )));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                let v = *input.get(i).ok_or_else(|| {
                    Error::ShapeMismatch(format!(
                        "Reshape: shape {spec:?} copies dimension {i} (0), but the input {input:?} has rank {}",
                        input.len()
                    ))
                })?;
                out.push(v);
            }
            d if d < 0 => {
                return Err(Error::InvalidArgument(format!(
                    "Reshape: invalid dimension {d} in shape {spec:?}"
                )))
            }
            d => out.push(d as usize),
        }
    }
    let total = crate::tensor::checked_numel(input)?;
    if let Some(i) = infer {
        let known = out
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX);
        if known == 0 || total % known != 0 {
            return Err(Error::ShapeMismatch(format!(
                "Reshape: cannot infer the -1 of shape {spec:?} for an input of shape {input:?} ({total} elements)"
            )));
        }
        out[i] = total / known;
    }
    if crate::tensor::checked_numel(&out)? != total {
        return Err(Error::ShapeMismatch(format!(
            "Reshape: input of shape {input:?} ({total} elements) cannot become shape {spec:?} (resolved to {out:?})"
        )));
    }
    Ok(out)
}

/// Reshape: same data, new shape (no copy).
struct Reshape {
    allowzero: bool,
    /// Shape given as an opset-1/4 attribute.
    attr_shape: Option<Vec<i64>>,
}

impl Op for Reshape {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Reshape")?;
        let spec = match &self.attr_shape {
            Some(s) => s.clone(),
            None => ints_of(tensor_in(inputs, 1, "Reshape")?, "Reshape: input 'shape'")?,
        };
        let shape = reshape_target(x.shape(), &spec, self.allowzero)?;
        Ok(vec![x.reshaped(&shape)?.into()])
    }
}

pub fn build_reshape(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_shape = if ctx.opset < 5 {
        ctx.attr_ints("shape")?
    } else {
        None
    };
    if attr_shape.is_none() && !ctx.has_input(1) {
        return Err(ctx.invalid("the 'shape' input is missing"));
    }
    Ok(Box::new(Reshape {
        allowzero: ctx.attr_i("allowzero", 0)? != 0,
        attr_shape,
    }))
}

/// Flatten: [d0..d(axis-1)] x [d(axis)..] as a 2-D tensor (no copy).
struct Flatten {
    axis: i64,
}

impl Op for Flatten {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Flatten")?;
        let r = x.rank() as i64;
        let a = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if a < 0 || a > r {
            return Err(Error::InvalidArgument(format!(
                "Flatten: axis {} is out of range for rank {r}",
                self.axis
            )));
        }
        let a = a as usize;
        let outer: usize = x.shape()[..a].iter().product();
        let inner: usize = x.shape()[a..].iter().product();
        Ok(vec![x.reshaped(&[outer, inner])?.into()])
    }
}

pub fn build_flatten(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Flatten {
        axis: ctx.attr_i("axis", 1)?,
    }))
}

/// Normalizes axes against `rank`, rejecting out-of-range and repeated axes.
pub fn norm_axes(axes: &[i64], rank: usize, op: &str) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = if a < 0 { a + rank as i64 } else { a };
        if n < 0 || n >= rank as i64 {
            return Err(Error::InvalidArgument(format!(
                "{op}: axis {a} is out of range for rank {rank}"
            )));
        }
        if out.contains(&(n as usize)) {
            return Err(Error::InvalidArgument(format!(
                "{op}: axis {a} is repeated in {axes:?}"
            )));
        }
        out.push(n as usize);
    }
    Ok(out)
}

/// Axes given either as an attribute (older opsets) or as an optional input (opset 13+).
pub fn axes_from(
    attr: &Option<Vec<i64>>,
    inputs: &[Option<&Value>],
    i: usize,
    op: &str,
) -> Result<Option<Vec<i64>>> {
    if let Some(a) = attr {
        return Ok(Some(a.clone()));
    }
    match crate::ops::opt_tensor_in(inputs, i, op)? {
        Some(t) => Ok(Some(ints_of(t, &format!("{op}: input 'axes'"))?)),
        None => Ok(None),
    }
}

/// Squeeze: removes the listed dimensions of size 1 (all of them without axes).
struct Squeeze {
    attr_axes: Option<Vec<i64>>,
}

impl Op for Squeeze {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Squeeze")?;
        let shape = x.shape();
        let out: Vec<usize> = match axes_from(&self.attr_axes, inputs, 1, "Squeeze")? {
            None => shape.iter().copied().filter(|d| *d != 1).collect(),
            Some(axes) => {
                let axes = norm_axes(&axes, shape.len(), "Squeeze")?;
                for &a in &axes {
                    if shape[a] != 1 {
                        return Err(Error::ShapeMismatch(format!(
                            "Squeeze: dimension {a} of shape {shape:?} is {}, not 1",
                            shape[a]
                        )));
                    }
                }
                shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, d)| *d)
                    .collect()
            }
        };
        Ok(vec![x.reshaped(&out)?.into()])
    }
}

pub fn build_squeeze(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_axes = if ctx.opset < 13 {
        ctx.attr_ints("axes")?
    } else {
        None
    };
    Ok(Box::new(Squeeze { attr_axes }))
}

/// Unsqueeze: inserts dimensions of size 1 at the listed positions of the output.
struct Unsqueeze {
    attr_axes: Option<Vec<i64>>,
}

impl Op for Unsqueeze {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Unsqueeze")?;
        let axes = axes_from(&self.attr_axes, inputs, 1, "Unsqueeze")?
            .ok_or_else(|| Error::InvalidArgument("Unsqueeze: 'axes' is missing".into()))?;
        let r = x.rank() + axes.len();
        let axes = norm_axes(&axes, r, "Unsqueeze")?;
        let mut src = x.shape().iter();
        let out: Vec<usize> = (0..r)
            .map(|i| {
                if axes.contains(&i) {
                    1
                } else {
                    src.next().copied().unwrap_or(1)
                }
            })
            .collect();
        Ok(vec![x.reshaped(&out)?.into()])
    }
}

pub fn build_unsqueeze(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_axes = if ctx.opset < 13 {
        ctx.attr_ints("axes")?
    } else {
        None
    };
    if ctx.opset < 13 && attr_axes.is_none() {
        return Err(ctx.invalid("attribute 'axes' is required"));
    }
    Ok(Box::new(Unsqueeze { attr_axes }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::error::Error;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn shape_and_size() {
        let x = Tensor::zeros(crate::DType::Float32, &[2, 3, 4]).unwrap();
        assert_eq!(
            ints(&run1("Shape", 15, vec![], vec![x.clone()])),
            vec![2, 3, 4]
        );
        let r = run1(
            "Shape",
            15,
            vec![("start", AttrValue::Int(-2)), ("end", AttrValue::Int(100))],
            vec![x.clone()],
        );
        assert_eq!(ints(&r), vec![3, 4]);
        let r = run1(
            "Shape",
            15,
            vec![("start", AttrValue::Int(2)), ("end", AttrValue::Int(1))],
            vec![x.clone()],
        );
        assert_eq!(r.shape(), &[0]);
        let r = run1("Size", 13, vec![], vec![x]);
        assert_eq!(r.shape(), &[] as &[usize]);
        assert_eq!(ints(&r), vec![24]);
    }

    #[test]
    fn reshape_rules() {
        let x =
            Tensor::from_slice(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        let s = Tensor::from_slice(&[3], &[0i64, -1, 2]).unwrap();
        let r = run1("Reshape", 14, vec![], vec![x.clone(), s]);
        assert_eq!(r.shape(), &[2, 6, 2]);
        assert!(r.shares_data_with(&x));
        let s = Tensor::from_slice(&[2], &[-1i64, -1]).unwrap();
        assert!(matches!(
            run("Reshape", 14, vec![], vec![x.clone(), s], 1),
            Err(Error::InvalidArgument(_))
        ));
        let s = Tensor::from_slice(&[2], &[5i64, -1]).unwrap();
        assert!(matches!(
            run("Reshape", 14, vec![], vec![x.clone(), s], 1),
            Err(Error::ShapeMismatch(_))
        ));
        // allowzero: 0 is a real zero dimension.
        let e = Tensor::zeros(crate::DType::Float32, &[0, 3]).unwrap();
        let s = Tensor::from_slice(&[2], &[3i64, 0]).unwrap();
        let r = run1(
            "Reshape",
            14,
            vec![("allowzero", AttrValue::Int(1))],
            vec![e, s],
        );
        assert_eq!(r.shape(), &[3, 0]);
        let strs = Tensor::from_strings(
            &[2, 2],
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()],
        )
        .unwrap();
        let s = Tensor::from_slice(&[1], &[4i64]).unwrap();
        assert_eq!(run1("Reshape", 14, vec![], vec![strs, s]).shape(), &[4]);
    }

    #[test]
    fn flatten_squeeze_unsqueeze() {
        let x = Tensor::zeros(crate::DType::Float32, &[2, 1, 3, 1]).unwrap();
        assert_eq!(
            run1(
                "Flatten",
                13,
                vec![("axis", AttrValue::Int(-1))],
                vec![x.clone()]
            )
            .shape(),
            &[6, 1]
        );
        assert_eq!(
            run1(
                "Flatten",
                13,
                vec![("axis", AttrValue::Int(0))],
                vec![x.clone()]
            )
            .shape(),
            &[1, 6]
        );
        assert_eq!(
            run1(
                "Flatten",
                13,
                vec![("axis", AttrValue::Int(4))],
                vec![x.clone()]
            )
            .shape(),
            &[6, 1]
        );
        assert_eq!(
            run1("Squeeze", 13, vec![], vec![x.clone()]).shape(),
            &[2, 3]
        );
        let ax = Tensor::from_slice(&[1], &[-1i64]).unwrap();
        assert_eq!(
            run1("Squeeze", 13, vec![], vec![x.clone(), ax]).shape(),
            &[2, 1, 3]
        );
        assert_eq!(
            run1(
                "Squeeze",
                11,
                vec![("axes", AttrValue::Ints(vec![1]))],
                vec![x.clone()]
            )
            .shape(),
            &[2, 3, 1]
        );
        let ax = Tensor::from_slice(&[1], &[0i64]).unwrap();
        assert!(matches!(
            run("Squeeze", 13, vec![], vec![x.clone(), ax], 1),
            Err(Error::ShapeMismatch(_))
        ));
        let ax = Tensor::from_slice(&[2], &[0i64, -1]).unwrap();
        assert_eq!(
            run1("Unsqueeze", 13, vec![], vec![x.clone(), ax]).shape(),
            &[1, 2, 1, 3, 1, 1]
        );
        let s = Tensor::scalar(1.5f32);
        assert_eq!(
            run1(
                "Unsqueeze",
                11,
                vec![("axes", AttrValue::Ints(vec![0]))],
                vec![s]
            )
            .shape(),
            &[1]
        );
        let ax = Tensor::from_slice(&[2], &[1i64, 1]).unwrap();
        assert!(run("Unsqueeze", 13, vec![], vec![x, ax], 1).is_err());
    }
}
