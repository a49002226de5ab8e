//! Operators that create tensors: Constant, ConstantOfShape, EyeLike, Range.

use super::elements::{apply_move, dispatch_numeric, ints_of, scalar_of, Elem, MoveKernel, Num};
use crate::error::{Error, Result};
use crate::graph::ir::AttrValue;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

/// Constant: a tensor fixed at build time, shared (never copied) on every run.
struct Constant {
    value: Tensor,
}

impl Op for Constant {
    fn run(&self, _inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        Ok(vec![Value::Tensor(self.value.clone())])
    }
}

pub fn build_constant(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let forms = [
        "value",
        "sparse_value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "value_string",
        "value_strings",
    ];
    let given: Vec<&str> = forms
        .iter()
        .copied()
        .filter(|f| ctx.attr(f).is_some())
        .collect();
    if given.len() != 1 {
        return Err(ctx.invalid(format!(
            "exactly one of the attributes {forms:?} must be given, got {given:?}"
        )));
    }
    let name = given[0];
    let attr = ctx
        .attr(name)
        .ok_or_else(|| ctx.invalid("attribute vanished"))?;
    let bad = || ctx.invalid(format!("attribute '{name}' has type {}", attr.kind()));
    let value = match (name, attr) {
        ("value" | "sparse_value", AttrValue::Tensor(t) | AttrValue::SparseTensor(t)) => t.clone(),
        ("value_float", AttrValue::Float(v)) => Tensor::scalar(*v),
        ("value_floats", AttrValue::Floats(v)) => Tensor::from_slice(&[v.len()], v)?,
        ("value_int", AttrValue::Int(v)) => Tensor::scalar(*v),
        ("value_ints", AttrValue::Ints(v)) => Tensor::from_slice(&[v.len()], v)?,
        ("value_string", AttrValue::String(v)) => Tensor::from_strings(&[], vec![v.clone()])?,
        ("value_strings", AttrValue::Strings(v)) => Tensor::from_strings(&[v.len()], v.clone())?,
        _ => return Err(bad()),
    };
    Ok(Box::new(Constant { value }))
}

/// Fills the output with the single element of the source.
struct FillKernel;

impl MoveKernel for FillKernel {
    // Every output element is written (a row copy or fill each).
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        if let Some(v) = srcs[0].first() {
            dst.fill(v.clone());
        }
        Ok(())
    }
}

/// A tensor of `shape` filled with the one element of `value`.
pub fn filled(value: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if value.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "fill value must have one element, got shape {:?}",
            value.shape()
        )));
    }
    apply_move("fill", value.dtype(), &[value], shape, &FillKernel)
}

/// Reads a 1-D shape input as dimensions, rejecting negative values.
pub fn dims_of(t: &Tensor, what: &str) -> Result<Vec<usize>> {
    ints_of(t, what)?
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| Error::InvalidArgument(format!("{what}: negative dimension {d}")))
        })
        .collect()
}

/// ConstantOfShape.
struct ConstantOfShape {
    value: Tensor,
}

impl Op for ConstantOfShape {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let shape = dims_of(
            tensor_in(inputs, 0, "ConstantOfShape")?,
            "ConstantOfShape: input 'input'",
        )?;
        Ok(vec![filled(&self.value, &shape)?.into()])
    }
}

pub fn build_constant_of_shape(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let value = match ctx.attr_tensor("value")? {
        Some(t) if t.len() == 1 => t.reshaped(&[1])?,
        Some(t) => {
            return Err(ctx.invalid(format!(
                "attribute 'value' must hold one element, got shape {:?}",
                t.shape()
            )))
        }
        None => Tensor::from_slice(&[1], &[0f32])?,
    };
    Ok(Box::new(ConstantOfShape { value }))
}

/// EyeLike: ones on the k-th diagonal of a 2-D tensor shaped like the input.
struct EyeLike {
    dtype: Option<DType>,
    k: i64,
}

impl Op for EyeLike {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "EyeLike")?;
        let &[rows, cols] = x.shape() else {
            return Err(Error::ShapeMismatch(format!(
                "EyeLike: input must be 2-D, got shape {:?}",
                x.shape()
            )));
        };
        let dtype = self.dtype.unwrap_or(x.dtype());
        let one = scalar_of(dtype, 1.0, &[1])?;
        let mut out = Tensor::zeros(dtype, &[rows, cols])?;
        let w = dtype.size();
        let one_b = one.bytes()?.to_vec();
        let bytes = out.make_mut_bytes()?;
        for r in 0..rows {
            let c = r as i64 + self.k;
            if c >= 0 && (c as usize) < cols {
                let at = (r * cols + c as usize) * w;
                bytes[at..at + w].copy_from_slice(&one_b);
            }
        }
        Ok(vec![out.into()])
    }
}

pub fn build_eye_like(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(EyeLike {
        dtype: ctx.attr_dtype("dtype")?,
        k: ctx.attr_i("k", 0)?,
    }))
}

/// Range: start, start + delta, ... up to (excluding) limit.
struct Range;

fn range_typed<T: Num>(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let get = |t: &Tensor, what: &str| -> Result<T> {
        t.as_slice::<T>()?
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidArgument(format!("Range: input '{what}' is empty")))
    };
    let (s, l, d) = (
        get(start, "start")?,
        get(limit, "limit")?,
        get(delta, "delta")?,
    );
    let n = if T::DTYPE.is_float() {
        let (s, l, d) = (s.to_f64(), l.to_f64(), d.to_f64());
        if d == 0.0 {
            return Err(Error::InvalidArgument("Range: delta is 0".into()));
        }
        ((l - s) / d).ceil().max(0.0)
    } else {
        let (s, l, d) = (s.to_f64() as i128, l.to_f64() as i128, d.to_f64() as i128);
        if d == 0 {
            return Err(Error::InvalidArgument("Range: delta is 0".into()));
        }
        let span = l - s;
        let q = span / d
            + if span % d != 0 && ((span < 0) == (d < 0)) {
                1
            } else {
                0
            };
        q.max(0) as f64
    };
    if n > (1u64 << 40) as f64 {
        return Err(Error::LimitExceeded(format!(
            "Range: {n} elements are too many"
        )));
    }
    let n = n as usize;
    Tensor::build::<T>(T::DTYPE, &[n], |o| {
        for (i, v) in o.iter_mut().enumerate() {
            *v = s.add(T::from_f64(i as f64).mul(d));
        }
        Ok(())
    })
}

impl Op for Range {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let s = tensor_in(inputs, 0, "Range")?;
        let l = tensor_in(inputs, 1, "Range")?;
        let d = tensor_in(inputs, 2, "Range")?;
        if l.dtype() != s.dtype() || d.dtype() != s.dtype() {
            return Err(Error::InvalidArgument(format!(
                "Range: start, limit and delta must share a type, got {}, {} and {}",
                s.dtype(),
                l.dtype(),
                d.dtype()
            )));
        }
        let t = dispatch_numeric!(s.dtype(), T => range_typed::<T>(s, l, d),
            Err(Error::UnsupportedDtype(format!("Range: element type {} is not supported", s.dtype()))))?;
        Ok(vec![t.into()])
    }
}

pub fn build_range(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Range))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::{DType, Tensor};

    #[test]
    fn constant_forms() {
        let t = run1(
            "Constant",
            13,
            vec![("value", AttrValue::Tensor(iota(&[2])))],
            vec![],
        );
        assert_eq!(floats(&t), vec![0., 1.]);
        let t = run1(
            "Constant",
            13,
            vec![("value_float", AttrValue::Float(2.5))],
            vec![],
        );
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(floats(&t), vec![2.5]);
        let t = run1(
            "Constant",
            13,
            vec![("value_ints", AttrValue::Ints(vec![3, 4]))],
            vec![],
        );
        assert_eq!(ints(&t), vec![3, 4]);
        let t = run1(
            "Constant",
            13,
            vec![("value_strings", AttrValue::Strings(vec![b"a".to_vec()]))],
            vec![],
        );
        assert_eq!(texts(&t), vec!["a"]);
        assert!(run("Constant", 13, vec![], vec![], 1).is_err());
        assert!(run(
            "Constant",
            13,
            vec![
                ("value_int", AttrValue::Int(1)),
                ("value_float", AttrValue::Float(1.))
            ],
            vec![],
            1
        )
        .is_err());
    }

    #[test]
    fn constant_of_shape_and_eye() {
        let t = run1("ConstantOfShape", 9, vec![], vec![i64s(&[2, 3])]);
        assert_eq!(t.dtype(), DType::Float32);
        assert_eq!(floats(&t), vec![0.; 6]);
        let v = Tensor::from_slice(&[1], &[7i32]).unwrap();
        let t = run1(
            "ConstantOfShape",
            9,
            vec![("value", AttrValue::Tensor(v))],
            vec![i64s(&[])],
        );
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(ints(&t), vec![7]);
        let e = run1(
            "EyeLike",
            9,
            vec![("k", AttrValue::Int(1)), ("dtype", AttrValue::Int(7))],
            vec![iota(&[3, 3])],
        );
        assert_eq!(ints(&e), vec![0, 1, 0, 0, 0, 1, 0, 0, 0]);
        let e = run1(
            "EyeLike",
            9,
            vec![("k", AttrValue::Int(-1))],
            vec![iota(&[2, 3])],
        );
        assert_eq!(floats(&e), vec![0., 0., 0., 1., 0., 0.]);
    }

    #[test]
    fn ranges() {
        let r = run1(
            "Range",
            11,
            vec![],
            vec![
                Tensor::scalar(10i32),
                Tensor::scalar(4i32),
                Tensor::scalar(-3i32),
            ],
        );
        assert_eq!(ints(&r), vec![10, 7]);
        let r = run1(
            "Range",
            11,
            vec![],
            vec![
                Tensor::scalar(1f32),
                Tensor::scalar(2f32),
                Tensor::scalar(0.3f32),
            ],
        );
        assert_eq!(r.len(), 4);
        assert!((floats(&r)[3] - 1.9).abs() < 1e-6);
        let r = run1(
            "Range",
            11,
            vec![],
            vec![
                Tensor::scalar(5i64),
                Tensor::scalar(1i64),
                Tensor::scalar(1i64),
            ],
        );
        assert_eq!(r.shape(), &[0]);
        assert!(run(
            "Range",
            11,
            vec![],
            vec![
                Tensor::scalar(1i64),
                Tensor::scalar(2i64),
                Tensor::scalar(0i64)
            ],
            1
        )
        .is_err());
    }
}
