//! Linear quantization: QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked),
//! DynamicQuantizeLinear.

use super::float_io::narrow;
use crate::error::{Error, Result};
use crate::graph::ir::{AttrValue, Node};
use crate::ops::common::norm_axis;
use crate::ops::{
    opt_tensor_in, registry, tensor_in, BuildContext, Op, Registry, RunContext, Value,
};
use crate::tensor::{DType, Tensor};

pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", build_quantize);
    r.add("DequantizeLinear", build_dequantize);
    r.add("DynamicQuantizeLinear", |_| {
        Ok(Box::new(DynamicQuantizeLinear))
    });
}

/// The integer range of a quantized type.
fn int_range(d: DType) -> Option<(i64, i64)> {
    Some(match d {
        DType::Uint8 => (0, 255),
        DType::Int8 => (-128, 127),
        DType::Uint16 => (0, 65535),
        DType::Int16 => (-32768, 32767),
        DType::Uint4 => (0, 15),
        DType::Int4 => (-8, 7),
        DType::Uint2 => (0, 3),
        DType::Int2 => (-2, 1),
        DType::Int32 => (i32::MIN as i64, i32::MAX as i64),
        _ => return None,
    })
}

/// Integer values (already clamped to `d`'s range) as a tensor of `d`.
fn int_tensor(d: DType, shape: &[usize], v: &[i64]) -> Result<Tensor> {
    match d {
        DType::Uint8 | DType::Uint4 | DType::Uint2 => Tensor::build::<u8>(d, shape, |o| {
            o.iter_mut().zip(v).for_each(|(o, x)| *o = *x as u8);
            Ok(())
        }),
        DType::Int8 | DType::Int4 | DType::Int2 => Tensor::build::<i8>(d, shape, |o| {
            o.iter_mut().zip(v).for_each(|(o, x)| *o = *x as i8);
            Ok(())
        }),
        DType::Uint16 => Tensor::from_vec(shape, v.iter().map(|x| *x as u16).collect::<Vec<u16>>()),
        DType::Int16 => Tensor::from_vec(shape, v.iter().map(|x| *x as i16).collect::<Vec<i16>>()),
        DType::Int32 => Tensor::from_vec(shape, v.iter().map(|x| *x as i32).collect::<Vec<i32>>()),
        d => Err(Error::UnsupportedDtype(format!(
            "quantized type {d} is not supported"
        ))),
    }
}

/// Whether `d` is one of the small float formats (float8 variants, float4).
fn is_small_float(d: DType) -> bool {
    matches!(
        d,
        DType::Float8E4M3FN
            | DType::Float8E4M3FNUZ
            | DType::Float8E5M2
            | DType::Float8E5M2FNUZ
            | DType::Float4E2M1
    )
}

/// Convert `t` to `to` with the engine's Cast operator, which owns the float8/float4 codecs.
fn cast(t: &Tensor, to: DType, saturate: bool, ctx: &RunContext) -> Result<Tensor> {
    let node = Node {
        name: String::new(),
        op_type: "Cast".into(),
        domain: String::new(),
        inputs: vec!["x".into()],
        outputs: vec!["y".into()],
        attrs: vec![
            ("to".into(), AttrValue::Int(to.code() as i64)),
            ("saturate".into(), AttrValue::Int(saturate as i64)),
        ],
        doc_string: String::new(),
    };
    let compile = |_: &std::sync::Arc<crate::graph::ir::Graph>| -> Result<std::sync::Arc<dyn crate::ops::SubgraphRunner>> {
        Err(Error::Internal("Cast has no subgraph".into()))
    };
    let build = registry()
        .get("", "Cast")
        .ok_or_else(|| Error::UnsupportedDtype(format!("no Cast operator to convert to {to}")))?;
    let op = build(&BuildContext {
        node: &node,
        opset: 23,
        const_inputs: vec![None],
        compile: &compile,
    })?;
    let v = Value::Tensor(t.clone());
    op.run(&[Some(&v)], ctx)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("Cast returned nothing".into()))?
        .into_tensor()
}

/// How a scale / zero-point tensor maps onto the elements of x.
#[derive(Debug, Clone, Copy)]
struct ParamMap {
    /// Elements after the axis.
    inner: usize,
    /// Extent of the axis in x.
    dim: usize,
    /// 0: per tensor; 1: per axis; otherwise the block size.
    mode: usize,
    /// Extent of the axis in the parameter (blocked mode).
    pdim: usize,
}

impl ParamMap {
    fn new(x: &[usize], p: &[usize], axis: i64, block: i64, op: &str) -> Result<ParamMap> {
        let n: usize = p.iter().product();
        if n == 1 && (p.len() <= 1) && block <= 0 {
            return Ok(ParamMap {
                inner: 1,
                dim: 1,
                mode: 0,
                pdim: 1,
            });
        }
        let ax = norm_axis(axis, x.len(), op)?;
        let inner: usize = x[ax + 1..].iter().product();
        let dim = x[ax];
        if block > 0 {
            let bs = block as usize;
            let mut want = x.to_vec();
            want[ax] = dim.div_ceil(bs);
            if p != want.as_slice() {
                return Err(Error::ShapeMismatch(format!(
                    "{op}: blocked scale has shape {p:?}, expected {want:?} (block_size {bs})"
                )));
            }
            return Ok(ParamMap {
                inner,
                dim,
                mode: bs,
                pdim: want[ax],
            });
        }
        if p.len() != 1 || p[0] != dim {
            return Err(Error::ShapeMismatch(format!(
                "{op}: scale of shape {p:?} must be a scalar or 1-D of length {dim} (axis {ax})"
            )));
        }
        Ok(ParamMap {
            inner,
            dim,
            mode: 1,
            pdim: dim,
        })
    }

    #[inline]
    fn index(&self, i: usize) -> usize {
        match self.mode {
            0 => 0,
            1 => (i / self.inner) % self.dim,
            bs => {
                let a = (i / self.inner) % self.dim;
                let o = i / (self.inner * self.dim);
                (o * self.pdim + a / bs) * self.inner + i % self.inner
            }
        }
    }
}

struct QuantizeLinear {
    saturate: bool,
    axis: i64,
    block: i64,
    output_dtype: Option<DType>,
}

fn build_quantize(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let od = ctx.attr_i("output_dtype", 0)?;
    Ok(Box::new(QuantizeLinear {
        saturate: ctx.attr_i("saturate", 1)? != 0,
        axis: ctx.attr_i("axis", 1)?,
        block: ctx.attr_i("block_size", 0)?,
        output_dtype: if od == 0 {
            None
        } else {
            Some(DType::from_code(od as i32).map_err(|e| e.context(ctx.node.describe()))?)
        },
    }))
}

/// Values of a float tensor (or int32 for QuantizeLinear-21 x) as f32.
fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(match t.dtype() {
        DType::Float32 => t.as_slice::<f32>()?.to_vec(),
        DType::Float16 => t
            .as_slice::<half::f16>()?
            .iter()
            .map(|v| v.to_f32())
            .collect(),
        DType::BFloat16 => t
            .as_slice::<half::bf16>()?
            .iter()
            .map(|v| v.to_f32())
            .collect(),
        _ => t.to_f64_vec()?.into_iter().map(|v| v as f32).collect(),
    })
}

impl Op for QuantizeLinear {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "QuantizeLinear";
        let x = tensor_in(inputs, 0, OP)?;
        let scale = tensor_in(inputs, 1, OP)?;
        let zp = opt_tensor_in(inputs, 2, OP)?;
        let out_dt = zp
            .map(|z| z.dtype())
            .or(self.output_dtype)
            .unwrap_or(DType::Uint8);
        if is_small_float(out_dt) {
            let map = ParamMap::new(x.shape(), scale.shape(), self.axis, self.block, OP)?;
            let (xv, sv) = (f32_values(x)?, f32_values(scale)?);
            // float4 adds its (float) zero point; float8 ignores it (the reference does the same).
            let zv = match zp {
                Some(z) if out_dt == DType::Float4E2M1 => {
                    f32_values(&cast(z, DType::Float32, true, ctx)?)?
                }
                _ => vec![0.0; sv.len()],
            };
            let y: Vec<f32> = xv
                .iter()
                .enumerate()
                .map(|(i, v)| v / sv[map.index(i)] + zv[map.index(i)])
                .collect();
            return Ok(vec![cast(
                &Tensor::from_vec(x.shape(), y)?,
                out_dt,
                self.saturate,
                ctx,
            )?
            .into()]);
        }
        let (lo, hi) = int_range(out_dt).ok_or_else(|| {
            Error::UnsupportedDtype(format!("{OP}: output type {out_dt} is not supported"))
        })?;
        let map = ParamMap::new(x.shape(), scale.shape(), self.axis, self.block, OP)?;
        let xv = f32_values(x)?;
        let sv = f32_values(scale)?;
        let zv = match zp {
            Some(z) => {
                if z.shape() != scale.shape() {
                    return Err(Error::ShapeMismatch(format!(
                        "{OP}: zero point shape {:?} differs from scale shape {:?}",
                        z.shape(),
                        scale.shape()
                    )));
                }
                z.to_i64_vec()?
            }
            None => vec![0; sv.len()],
        };
        let half_div = x.dtype() == DType::Float16;
        let q: Vec<i64> = xv
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = map.index(i);
                let mut d = v / sv[p];
                if half_div {
                    d = half::f16::from_f32(d).to_f32();
                }
                let r = d.round_ties_even();
                let r = if r.is_nan() { 0 } else { r as i64 };
                (r + zv[p]).clamp(lo, hi)
            })
            .collect();
        Ok(vec![int_tensor(out_dt, x.shape(), &q)?.into()])
    }
}

struct DequantizeLinear {
    axis: i64,
    block: i64,
    output_dtype: Option<DType>,
}

fn build_dequantize(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let od = ctx.attr_i("output_dtype", 0)?;
    Ok(Box::new(DequantizeLinear {
        axis: ctx.attr_i("axis", 1)?,
        block: ctx.attr_i("block_size", 0)?,
        output_dtype: if od == 0 {
            None
        } else {
            Some(DType::from_code(od as i32).map_err(|e| e.context(ctx.node.describe()))?)
        },
    }))
}

impl Op for DequantizeLinear {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "DequantizeLinear";
        let x = tensor_in(inputs, 0, OP)?;
        let scale = tensor_in(inputs, 1, OP)?;
        let zp = opt_tensor_in(inputs, 2, OP)?;
        if is_small_float(x.dtype()) {
            let map = ParamMap::new(x.shape(), scale.shape(), self.axis, self.block, OP)?;
            let xv = f32_values(&cast(x, DType::Float32, true, ctx)?)?;
            let sv = f32_values(scale)?;
            let zv = match zp {
                Some(z) => f32_values(&cast(z, DType::Float32, true, ctx)?)?,
                None => vec![0.0; sv.len()],
            };
            let y: Vec<f32> = xv
                .iter()
                .enumerate()
                .map(|(i, v)| (v - zv[map.index(i)]) * sv[map.index(i)])
                .collect();
            let out_dt = self.output_dtype.unwrap_or(scale.dtype());
            return Ok(vec![narrow(Tensor::from_vec(x.shape(), y)?, out_dt)?.into()]);
        }
        if int_range(x.dtype()).is_none() {
            return Err(Error::UnsupportedDtype(format!(
                "{OP}: input type {} is not supported",
                x.dtype()
            )));
        }
        let map = ParamMap::new(x.shape(), scale.shape(), self.axis, self.block, OP)?;
        let xv = x.to_i64_vec()?;
        let sv = f32_values(scale)?;
        let zv = match zp {
            Some(z) => z.to_i64_vec()?,
            None => vec![0; sv.len()],
        };
        if zv.len() != sv.len() {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: zero point has {} values, scale {}",
                zv.len(),
                sv.len()
            )));
        }
        let y: Vec<f32> = xv
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = map.index(i);
                (v - zv[p]) as f32 * sv[p]
            })
            .collect();
        let out_dt = self.output_dtype.unwrap_or(scale.dtype());
        let t = Tensor::from_vec(x.shape(), y)?;
        Ok(vec![narrow(t, out_dt)?.into()])
    }
}

struct DynamicQuantizeLinear;

impl Op for DynamicQuantizeLinear {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "DynamicQuantizeLinear";
        let x = tensor_in(inputs, 0, OP)?;
        let xv = f32_values(x)?;
        let maxx = xv.iter().fold(0f32, |m, v| m.max(*v));
        let minx = xv.iter().fold(0f32, |m, v| m.min(*v));
        let scale = if maxx == minx { 1.0 } else { maxx - minx } / 255.0;
        let zp = (0.0 - minx / scale).clamp(0.0, 255.0).round_ties_even();
        let y: Vec<u8> = xv
            .iter()
            .map(|v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
            .collect();
        let scale_t = narrow(Tensor::scalar(scale), x.dtype())?;
        Ok(vec![
            Tensor::from_vec(x.shape(), y)?.into(),
            scale_t.into(),
            Tensor::scalar(zp as u8).into(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::{DType, Tensor};

    #[test]
    fn quantize_dequantize() {
        let x = tf(&[6], &[0., 2., 3., 1000., -254., -1000.]);
        let s = tf(&[], &[2.]);
        let z = Tensor::from_slice(&[], &[128u8]).unwrap();
        let y = &run_op(
            "QuantizeLinear",
            13,
            vec![],
            vec![Some(x), Some(s.clone()), Some(z.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<u8>().unwrap(), &[128, 129, 130, 255, 1, 0]);
        let d = &run_op(
            "DequantizeLinear",
            13,
            vec![],
            vec![Some(y.clone()), Some(s), Some(z)],
            1,
        )
        .unwrap()[0];
        assert_eq!(
            d.as_slice::<f32>().unwrap(),
            &[0., 2., 4., 254., -254., -256.]
        );
        // Per axis int4 output via output_dtype... and zero point int8 per axis.
        let x = tf(&[2, 2], &[1., 2., 3., 4.]);
        let s = tf(&[2], &[1., 2.]);
        let z = Tensor::build::<i8>(DType::Int4, &[2], |o| {
            o.copy_from_slice(&[0, 1]);
            Ok(())
        })
        .unwrap();
        let y = &run_op(
            "QuantizeLinear",
            21,
            vec![("axis", AttrValue::Int(1))],
            vec![Some(x), Some(s), Some(z)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.dtype(), DType::Int4);
        assert_eq!(y.as_slice::<i8>().unwrap(), &[1, 2, 3, 3]);
    }

    #[test]
    fn dynamic_quantize() {
        let x = tf(&[3], &[0., 2., -3.]);
        let out = run_op("DynamicQuantizeLinear", 11, vec![], vec![Some(x)], 3).unwrap();
        let scale = 5f32 / 255.;
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[scale]);
        assert_eq!(out[2].as_slice::<u8>().unwrap(), &[153]);
        assert_eq!(out[0].as_slice::<u8>().unwrap(), &[153, 255, 0]);
    }
}
