//! Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv.
//!
//! All of them run [`crate::kernels::conv`]: depthwise convolutions use a direct kernel,
//! 1×1 convolutions a plain GEMM, the rest im2col + GEMM; ConvTranspose is GEMM + col2im.
//! Integer variants compute exactly in `f64` (products of 8-bit values stay far below 2^53).

use super::float_io::{is_compute_float, narrow, widen};
use super::window::{AutoPad, WindowAttrs};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::conv::{col2im_rows, conv_forward, conv_forward_into, ConvShape, Window3};
use crate::kernels::float::Float;
use crate::kernels::gemm::{GemmElem, MatRef};
use crate::kernels::sgemm::PackedA;
use crate::kernels::vmath::Act;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::borrow::Cow;

pub fn register(r: &mut Registry) {
    r.add("Conv", build_conv);
    // Conv + activation, made by the optimizer (see crate::optimizer::fuse).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "FusedConv", build_fused_conv);
    // Channels-last pointwise and depthwise convolutions and their global average pool, made
    // by the layout pass (see crate::optimizer::layout).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "NhwcConv", build_nhwc_conv);
    r.add_domain(crate::optimizer::fuse::DOMAIN, "NhwcGlobalAveragePool", |_| Ok(Box::new(NhwcGlobalAveragePool)));
    // A pointwise convolution feeding a depthwise one, made by the optimizer (see
    // crate::optimizer::fuse::fuse_expand_depthwise).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "ExpandDepthwise", build_expand_depthwise);
    // A convolution whose only reader is a MaxPool, made by the optimizer (see
    // crate::optimizer::fuse::fuse_conv_maxpool).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "ConvMaxPool", build_conv_maxpool);
    r.add("ConvTranspose", build_conv_transpose);
    r.add("ConvInteger", build_conv_integer);
    r.add("QLinearConv", build_qlinear_conv);
    r.add("DeformConv", build_deform_conv);
}

/// Attributes common to the convolutions.
#[derive(Debug, Clone)]
struct ConvAttrs {
    window: WindowAttrs,
    group: usize,
}

impl ConvAttrs {
    fn parse(ctx: &BuildContext) -> Result<ConvAttrs> {
        let group = ctx.attr_i("group", 1)?;
        if group < 1 {
            return Err(ctx.invalid(format!("attribute 'group' must be >= 1, got {group}")));
        }
        Ok(ConvAttrs {
            window: WindowAttrs::parse(ctx)?,
            group: group as usize,
        })
    }

    /// The convolution geometry for input `x` and weights `w` (`[M, C/group, k...]`), and the output shape.
    fn geometry(&self, x: &[usize], w: &[usize], op: &str) -> Result<(ConvShape, Vec<usize>)> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(Error::ShapeMismatch(format!(
                "{op}: X {x:?} must have rank >= 3 and W {w:?} the same rank"
            )));
        }
        let (n, c, m) = (x[0], x[1], w[0]);
        if c != w[1] * self.group || m % self.group != 0 {
            return Err(Error::ShapeMismatch(format!(
                "{op}: X has {c} channels and W has shape {w:?}, which does not fit group {}",
                self.group
            )));
        }
        let kernel = self.kernel(w, op)?;
        let win = self.window.resolve(&x[2..], &kernel, op)?;
        let mut out = vec![n, m];
        out.extend(&win.out);
        Ok((
            ConvShape {
                batch: n,
                in_channels: c,
                out_channels: m,
                group: self.group,
                window: win.as_3d()?,
            },
            out,
        ))
    }

    fn kernel(&self, w: &[usize], op: &str) -> Result<Vec<usize>> {
        let k = w[2..].to_vec();
        if let Some(attr) = &self.window.kernel {
            if *attr != k {
                return Err(Error::ShapeMismatch(format!(
                    "{op}: kernel_shape {attr:?} does not match the weights' {k:?}"
                )));
            }
        }
        Ok(k)
    }
}

fn widen_const(ctx: &BuildContext, i: usize) -> Result<Option<Tensor>> {
    match ctx.const_inputs.get(i).copied().flatten() {
        Some(t) if matches!(t.dtype(), DType::Float16 | DType::BFloat16) => {
            Ok(Some(widen(t)?.into_owned()))
        }
        _ => Ok(None),
    }
}

/// `Conv` (opsets 1, 11, 22), and `FusedConv`: Conv followed by an activation.
struct Conv {
    attrs: ConvAttrs,
    w_const: Option<Tensor>,
    act: Act,
    /// Constant f32 weights packed for the GEMM, one per group (not for depthwise); dropped
    /// once the node runs as the transposed product, which packs them its own way.
    packed: std::sync::RwLock<Option<Vec<PackedA>>>,
    /// The implicit-GEMM plan for the last input shape, or the interleaved depthwise taps.
    plans: crate::kernels::conv::PlanCache,
}

/// The per-node convolution state: depthwise taps interleaved now when the weights are
/// constant f32 `[C][1][K...]` with `group == C`.
fn conv_plans(ctx: &BuildContext, group: usize) -> crate::kernels::conv::PlanCache {
    let w = ctx.const_inputs.get(1).copied().flatten();
    match w {
        Some(w) if w.dtype() == DType::Float32 && w.rank() >= 3 && group > 1 && w.shape()[0] == group && w.shape()[1] == 1 => match w.as_slice::<f32>() {
            Ok(v) => crate::kernels::conv::PlanCache::depthwise(v, group),
            Err(_) => Default::default(),
        },
        _ => Default::default(),
    }
}

/// Pack constant f32 weights `[M][C/group][K...]` per group for the GEMM strategies.
fn pack_weights(ctx: &BuildContext, group: usize) -> Option<Vec<PackedA>> {
    let w = ctx.const_inputs.get(1).copied().flatten()?;
    if w.dtype() != DType::Float32 || w.rank() < 3 || group == 0 {
        return None;
    }
    let (m, cg) = (w.shape()[0], w.shape()[1]);
    if m % group != 0 || (cg == 1 && group > 1) {
        return None;
    }
    let v = w.as_slice::<f32>().ok()?;
    let (mg, kdim) = (m / group, v.len() / m.max(1));
    // Deeper blocks where the implicit GEMM will run (every driver accepts either).
    let pack = if crate::kernels::sgemm::implicit_available() { PackedA::for_implicit } else { PackedA::new };
    Some((0..group).map(|g| pack(mg, kdim, &v[g * mg * kdim..(g + 1) * mg * kdim], kdim, 1)).collect())
}

fn build_conv(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attrs = ConvAttrs::parse(ctx)?;
    let (packed, plans) = (pack_weights(ctx, attrs.group), conv_plans(ctx, attrs.group));
    Ok(Box::new(Conv { attrs, w_const: widen_const(ctx, 1)?, act: Act::Identity, packed: packed.into(), plans }))
}

fn build_fused_conv(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(fused_conv(ctx, "")?))
}

/// A `FusedConv` from the node of `ctx`, its activation in the attributes `{prefix}activation`
/// and `{prefix}activation_params`.
fn fused_conv(ctx: &BuildContext, prefix: &str) -> Result<Conv> {
    let name = ctx.attr_s(&format!("{prefix}activation"), "")?;
    let params = ctx.attr_floats(&format!("{prefix}activation_params"))?.unwrap_or_default();
    let act = Act::from_attrs(&name, &params)
        .ok_or_else(|| ctx.invalid(format!("unknown fused activation '{name}' with parameters {params:?}")))?;
    let attrs = ConvAttrs::parse(ctx)?;
    let (packed, plans) = (pack_weights(ctx, attrs.group), conv_plans(ctx, attrs.group));
    Ok(Conv { attrs, w_const: widen_const(ctx, 1)?, act, packed: packed.into(), plans })
}

/// `ExpandDepthwise` (private domain): a pointwise convolution (1x1, unit strides, no padding,
/// one group) whose only reader is a depthwise one, as one node. Inputs `X, W1, B1, W2, B2`
/// (either bias may be ""); the attributes of the depthwise `FusedConv`, and the pointwise
/// activation as `pw_activation` and `pw_activation_params`. With constant f32 weights on an
/// AVX-512 CPU it runs [`crate::kernels::depthwise::expand_depthwise_f32`], which never stores
/// the expanded image; otherwise the two convolutions one after the other.
struct ExpandDepthwise {
    pw: Conv,
    dw: Conv,
    /// The pointwise weights transposed (`[C][E]`) and packed for the fused kernel.
    wt: Option<crate::kernels::sgemm::PackedB>,
}

fn build_expand_depthwise(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let n = ctx.node;
    if n.inputs.len() != 5 {
        return Err(ctx.invalid(format!("ExpandDepthwise takes 5 inputs (X, W1, B1, W2, B2), got {}", n.inputs.len())));
    }
    let part = |inputs: [&String; 3], pw: bool| crate::graph::ir::Node {
        name: n.name.clone(),
        op_type: "FusedConv".into(),
        domain: crate::optimizer::fuse::DOMAIN.into(),
        inputs: inputs.into_iter().cloned().collect(),
        outputs: n.outputs.clone(),
        attrs: n.attrs.iter().filter(|(k, _)| k.starts_with("pw_") == pw).cloned().collect(),
        doc_string: String::new(),
    };
    let consts = |r: std::ops::Range<usize>| r.map(|i| ctx.const_inputs.get(i).copied().flatten()).collect::<Vec<_>>();
    let (pw_node, dw_node) = (part([&n.inputs[0], &n.inputs[1], &n.inputs[2]], true), part([&n.outputs[0], &n.inputs[3], &n.inputs[4]], false));
    let pw_ctx = BuildContext { node: &pw_node, opset: ctx.opset, const_inputs: consts(0..3), compile: ctx.compile };
    let mut dw_consts = consts(3..5);
    dw_consts.insert(0, None);
    let dw_ctx = BuildContext { node: &dw_node, opset: ctx.opset, const_inputs: dw_consts, compile: ctx.compile };
    let (pw, dw) = (fused_conv(&pw_ctx, "pw_")?, fused_conv(&dw_ctx, "")?);
    if pw.attrs.group != 1 {
        return Err(ctx.invalid(format!("ExpandDepthwise: the pointwise convolution has group {}", pw.attrs.group)));
    }
    // Wᵀ for the fused kernel: W1 is [E][C][1][1], read as C x E with rows 1 apart.
    let wt = match ctx.const_inputs.get(1).copied().flatten() {
        Some(w) if w.dtype() == DType::Float32 && w.rank() == 4 && w.shape()[2..] == [1, 1] && crate::kernels::sgemm::implicit_available() => {
            let (e, c) = (w.shape()[0], w.shape()[1]);
            let v = w.as_slice::<f32>()?;
            (e > 0 && c > 0).then(|| crate::kernels::sgemm::PackedB::for_implicit_t(c, e, v, 1, c))
        }
        _ => None,
    };
    Ok(Box::new(ExpandDepthwise { pw, dw, wt }))
}

impl Op for ExpandDepthwise {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let pw_in = [inputs.first().copied().flatten(), inputs.get(1).copied().flatten(), inputs.get(2).copied().flatten()];
        let (x, _, b1, ps, pout) = self.pw.checked(&pw_in)?;
        let w2 = tensor_in(inputs, 3, "Conv")?;
        let b2 = opt_tensor_in(inputs, 4, "Conv")?;
        if let Some(wt) = &self.wt {
            let f32s = [Some(x), Some(w2), b1, b2].iter().flatten().all(|t| t.dtype() == DType::Float32);
            let taps = self.dw.plans.depthwise_taps();
            if f32s && pout.len() == 4 && wt.depth() == ps.in_channels && wt.cols() == ps.out_channels {
                let (ds, dout) = self.dw.attrs.geometry(&pout, w2.shape(), "Conv")?;
                let e = ds.out_channels;
                let fits = ds.group == e && ds.in_channels == e && b1.is_none_or(|b| b.len() == e) && b2.is_none_or(|b| b.len() == e);
                let fused = crate::kernels::depthwise::expand_depthwise_available(&ds.window, e, taps) && crate::kernels::depthwise::expand_depthwise_pays(&ds.window);
                if fits && fused {
                    let ex = crate::kernels::depthwise::Expand { cin: ps.in_channels, wt, bias: b1.map(|b| b.as_slice::<f32>()).transpose()?, act: self.pw.act };
                    let xv = x.as_slice::<f32>()?;
                    let b2v = b2.map(|b| b.as_slice::<f32>()).transpose()?;
                    let taps = taps.expect("checked available");
                    let y = Tensor::build_uninit::<f32>(DType::Float32, &dout, |y| {
                        crate::kernels::depthwise::expand_depthwise_f32(ctx.pool, &ds.window, ds.batch, e, xv, &ex, taps, b2v, self.dw.act, y)
                    })?;
                    return Ok(vec![y.into()]);
                }
            }
        }
        let t = self.pw.run(&pw_in, ctx)?;
        self.dw.run(&[t.first(), inputs.get(3).copied().flatten(), inputs.get(4).copied().flatten()], ctx)
    }
}

/// The checked inputs of a convolution: X, W, B, the geometry and the output shape.
type ConvInputs<'a> = (&'a Tensor, &'a Tensor, Option<&'a Tensor>, ConvShape, Vec<usize>);

impl Conv {
    /// `f(packed weights)`; afterwards, when the node's plan is the transposed product (which
    /// never reads them), the packed weights are freed.
    fn with_packed<R>(&self, f: impl FnOnce(Option<&[PackedA]>) -> R) -> R {
        let guard = self.packed.read().unwrap_or_else(|e| e.into_inner());
        let held = guard.is_some();
        let r = f(guard.as_deref());
        drop(guard);
        if held && self.plans.is_transposed() {
            // Another run holding them keeps them until a later run.
            if let Ok(mut w) = self.packed.try_write() {
                *w = None;
            }
        }
        r
    }

    fn checked<'a>(&self, inputs: &[Option<&'a Value>]) -> Result<ConvInputs<'a>> {
        let x = tensor_in(inputs, 0, "Conv")?;
        let w = tensor_in(inputs, 1, "Conv")?;
        let b = opt_tensor_in(inputs, 2, "Conv")?;
        let dt = x.dtype();
        if !is_compute_float(dt) || w.dtype() != dt || b.is_some_and(|b| b.dtype() != dt) {
            return Err(Error::UnsupportedDtype(format!(
                "Conv: X, W and B must share a float type, got X {dt}, W {}",
                w.dtype()
            )));
        }
        let (shape, out_shape) = self.attrs.geometry(x.shape(), w.shape(), "Conv")?;
        if let Some(b) = b {
            if b.len() != shape.out_channels {
                return Err(Error::ShapeMismatch(format!(
                    "Conv: B has {} values for {} output channels",
                    b.len(),
                    shape.out_channels
                )));
            }
        }
        Ok((x, w, b, shape, out_shape))
    }
}

impl Op for Conv {
    fn writes_into(&self) -> bool {
        true
    }

    fn output_shape_f32(&self, inputs: &[Option<&Value>]) -> Option<Vec<usize>> {
        let (x, _, _, _, out_shape) = self.checked(inputs).ok()?;
        (x.dtype() == DType::Float32).then_some(out_shape)
    }

    fn run_into_f32(&self, inputs: &[Option<&Value>], ctx: &RunContext, out: &mut [f32], image_stride: usize) -> Result<()> {
        let (x, w, b, shape, _) = self.checked(inputs)?;
        let wv = match &self.w_const {
            Some(t) => t.as_slice::<f32>()?,
            None => w.as_slice::<f32>()?,
        };
        let bias = b.map(|b| b.as_slice::<f32>()).transpose()?;
        let xv = x.as_slice::<f32>()?;
        self.with_packed(|packed| conv_forward_into(ctx.pool, &shape, xv, wv, bias, self.act, packed, Some(&self.plans), out, image_stride))
    }

    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, w, b, shape, out_shape) = self.checked(inputs)?;
        let dt = x.dtype();
        let xw = widen(x)?;
        let ww = match &self.w_const {
            Some(t) => Cow::Borrowed(t),
            None => widen(w)?,
        };
        let bw = b.map(widen).transpose()?;
        let y = crate::with_float!(xw.dtype(), "Conv", T => {
            let bias = match &bw { Some(b) => Some(b.as_slice::<T>()?), None => None };
            let (xv, wv) = (xw.as_slice::<T>()?, ww.as_slice::<T>()?);
            self.with_packed(|packed| Tensor::build_uninit::<T>(xw.dtype(), &out_shape, |o| conv_forward(ctx.pool, &shape, xv, wv, bias, self.act, packed, Some(&self.plans), o)))
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

/// `ConvMaxPool` (private domain): a `Conv`/`FusedConv` whose only reader is a `MaxPool`, as
/// one node. Inputs and attributes of the convolution, the pool's attributes prefixed `pool_`.
/// For f32 convolutions of one group run by the implicit GEMM it computes the pool band by band
/// ([`crate::kernels::conv::conv_maxpool_f32`]), never storing the convolution's output;
/// otherwise the two operators one after the other.
struct ConvMaxPool {
    conv: Conv,
    pool: Box<dyn Op>,
    pool_attrs: WindowAttrs,
}

fn build_conv_maxpool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let n = ctx.node;
    let pool_node = crate::graph::ir::Node {
        name: n.name.clone(),
        op_type: "MaxPool".into(),
        domain: String::new(),
        inputs: n.outputs.clone(),
        outputs: n.outputs.clone(),
        attrs: n.attrs.iter().filter_map(|(k, v)| k.strip_prefix("pool_").map(|k| (k.to_string(), v.clone()))).collect(),
        doc_string: String::new(),
    };
    let conv_node = crate::graph::ir::Node { attrs: n.attrs.iter().filter(|(k, _)| !k.starts_with("pool_")).cloned().collect(), ..n.clone() };
    let pool_ctx = BuildContext { node: &pool_node, opset: ctx.opset.max(12), const_inputs: vec![None], compile: ctx.compile };
    let conv_ctx = BuildContext { node: &conv_node, opset: ctx.opset, const_inputs: ctx.const_inputs.clone(), compile: ctx.compile };
    let pool_attrs = WindowAttrs::parse(&pool_ctx)?;
    if pool_attrs.kernel.is_none() {
        return Err(ctx.invalid("ConvMaxPool: attribute 'pool_kernel_shape' is required"));
    }
    Ok(Box::new(ConvMaxPool { conv: fused_conv(&conv_ctx, "")?, pool: super::pool::build_max_pool(&pool_ctx)?, pool_attrs }))
}

impl Op for ConvMaxPool {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, w, b, cs, cout) = self.conv.checked(inputs)?;
        if cout.len() == 4 && [Some(x), Some(w), b].iter().flatten().all(|t| t.dtype() == DType::Float32) {
            let kernel = self.pool_attrs.kernel.clone().unwrap_or_default();
            let pwin = self.pool_attrs.resolve(&cout[2..], &kernel, "MaxPool")?;
            let pw3 = pwin.as_3d().map_err(|e| e.context("MaxPool"))?;
            let pout = [cout[0], cout[1], pwin.out[0], pwin.out[1]];
            let wv = match &self.conv.w_const {
                Some(t) => t.as_slice::<f32>()?,
                None => w.as_slice::<f32>()?,
            };
            let bias = b.map(|b| b.as_slice::<f32>()).transpose()?;
            let xv = x.as_slice::<f32>()?;
            let mut done = false;
            let y = self.conv.with_packed(|packed| {
                Tensor::build_uninit::<f32>(DType::Float32, &pout, |y| {
                    done = crate::kernels::conv::conv_maxpool_f32(ctx.pool, &cs, xv, wv, bias, self.conv.act, packed, &self.conv.plans, &pw3, y)?;
                    Ok(())
                })
            })?;
            if done {
                return Ok(vec![y.into()]);
            }
        }
        let t = self.conv.run(inputs, ctx)?;
        self.pool.run(&[t.first()], ctx)
    }
}

/// `NhwcConv` (private domain): a `Conv`/`FusedConv` over channels-last images, `X` `[N, H, W,
/// C]` -> `Y` `[N, OH, OW, M]`, with the attributes of `FusedConv` (`activation` optional) and
/// constant f32 weights in ONNX order (`[M, C/group, KH, KW]`). Two kinds: pointwise (1x1,
/// unit strides, no padding, one group: a GEMM whose rows are the pixels, read in place) and
/// depthwise (`group == C == M`).
struct NhwcConv {
    attrs: ConvAttrs,
    act: Act,
    kind: NhwcKind,
}

enum NhwcKind {
    /// `Wᵀ` (`[C][M]`) packed as the GEMM's B.
    Pointwise(crate::kernels::sgemm::PackedB),
    /// The taps interleaved for this CPU's depthwise kernel.
    Depthwise(Option<crate::kernels::depthwise::DepthwiseTaps>),
}

fn build_nhwc_conv(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let name = ctx.attr_s("activation", "")?;
    let params = ctx.attr_floats("activation_params")?.unwrap_or_default();
    let act = if name.is_empty() {
        Act::Identity
    } else {
        Act::from_attrs(&name, &params).ok_or_else(|| ctx.invalid(format!("unknown fused activation '{name}' with parameters {params:?}")))?
    };
    let attrs = ConvAttrs::parse(ctx)?;
    let w = match ctx.const_inputs.get(1).copied().flatten() {
        Some(w) if w.dtype() == DType::Float32 && w.rank() == 4 => w,
        _ => return Err(ctx.invalid("NhwcConv: W must be a constant float32 tensor of rank 4")),
    };
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let weights = w.as_slice::<f32>()?;
    let kind = if attrs.group == 1 && kh == 1 && kw == 1 {
        NhwcKind::Pointwise(crate::kernels::sgemm::PackedB::new(cg, m, weights, 1, cg))
    } else if cg == 1 && attrs.group == m {
        NhwcKind::Depthwise(crate::kernels::depthwise::DepthwiseTaps::new(weights, m))
    } else {
        return Err(ctx.invalid(format!("NhwcConv: W {:?} with group {} is neither pointwise nor depthwise", w.shape(), attrs.group)));
    };
    Ok(Box::new(NhwcConv { attrs, act, kind }))
}

impl Op for NhwcConv {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "NhwcConv";
        let x = tensor_in(inputs, 0, OP)?;
        let w = tensor_in(inputs, 1, OP)?;
        let b = opt_tensor_in(inputs, 2, OP)?;
        if x.dtype() != DType::Float32 || x.rank() != 4 {
            return Err(Error::UnsupportedDtype(format!("{OP}: X must be a float32 [N, H, W, C] tensor, got {} {:?}", x.dtype(), x.shape())));
        }
        let xs = x.shape();
        let (shape, out) = self.attrs.geometry(&[xs[0], xs[3], xs[1], xs[2]], w.shape(), OP)?;
        let bias = match b {
            Some(b) if b.dtype() != DType::Float32 || b.len() != shape.out_channels => {
                return Err(Error::ShapeMismatch(format!("{OP}: B must hold {} float32 values, got {} {:?}", shape.out_channels, b.dtype(), b.shape())))
            }
            Some(b) => Some(b.as_slice::<f32>()?),
            None => None,
        };
        if w.dtype() != DType::Float32 {
            return Err(Error::UnsupportedDtype(format!("{OP}: W must be float32, got {}", w.dtype())));
        }
        // The weights as read at run time (the constant the node was built from): the
        // matrix-vector and the depthwise paths read them as they are.
        let (xv, wv) = (x.as_slice::<f32>()?, w.as_slice::<f32>()?);
        let out_shape = [out[0], out[2], out[3], out[1]];
        let y = Tensor::build_uninit::<f32>(DType::Float32, &out_shape, |y| match &self.kind {
            NhwcKind::Pointwise(bt) => {
                if shape.window.input != shape.window.out || shape.window.strides != [1, 1, 1] || shape.window.pad_begin != [0, 0, 0] {
                    return Err(Error::InvalidArgument(format!("{OP}: a pointwise NhwcConv needs unit strides and no padding, got {:?}", shape.window)));
                }
                let (px, c, m) = (xv.len() / shape.in_channels.max(1), shape.in_channels, shape.out_channels);
                if px == shape.batch && c > 0 {
                    // 1x1 maps (squeeze-excitation): one matrix-vector product per image,
                    // each output a dot product of a weight row (contiguous) and the pixel.
                    for (xn, yn) in xv.chunks_exact(c).zip(y.chunks_exact_mut(m)) {
                        crate::kernels::gemm::dots_f32(xn, wv, c, m, 1.0, 0.0, yn, 1);
                        if let Some(b) = bias {
                            yn.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                        }
                        crate::kernels::vmath::apply_inplace(self.act, yn);
                    }
                } else if px > 0 && m > 0 {
                    let epi = crate::kernels::sgemm::Epilogue { bias: None, col_bias: bias, act: self.act };
                    // SAFETY: A is the px x c row-major input, B the packed c x m weights, C
                    // the px x m output (sizes from the checked geometry).
                    unsafe { crate::kernels::sgemm::sgemm_packed_b_par(ctx.pool, px, m, c, (xv.as_ptr(), c, 1, 1.0), bt, 0.0, y.as_mut_ptr(), m, epi) };
                }
                Ok(())
            }
            NhwcKind::Depthwise(taps) => {
                crate::kernels::depthwise::depthwise_nhwc_f32(ctx.pool, &shape.window, shape.batch, shape.out_channels, xv, wv, taps.as_ref(), bias, self.act, y)
            }
        })?;
        Ok(vec![y.into()])
    }
}

/// `NhwcGlobalAveragePool` (private domain): `[N, H, W, C]` -> `[N, 1, 1, C]`.
struct NhwcGlobalAveragePool;

impl Op for NhwcGlobalAveragePool {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "NhwcGlobalAveragePool";
        let x = tensor_in(inputs, 0, OP)?;
        if x.dtype() != DType::Float32 || x.rank() != 4 {
            return Err(Error::UnsupportedDtype(format!("{OP}: X must be a float32 [N, H, W, C] tensor, got {} {:?}", x.dtype(), x.shape())));
        }
        let s = x.shape();
        let (n, px, c) = (s[0], s[1] * s[2], s[3]);
        let xv = x.as_slice::<f32>()?;
        let mut y = vec![0f32; n * c];
        if c > 0 && px == 0 {
            y.fill(f32::NAN);
        } else if c > 0 {
            for (yn, xn) in y.chunks_exact_mut(c).zip(xv.chunks(px * c)) {
                for row in xn.chunks_exact(c) {
                    yn.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                let inv = 1.0 / px.max(1) as f32;
                yn.iter_mut().for_each(|a| *a *= inv);
            }
        }
        Ok(vec![Tensor::from_vec(&[n, 1, 1, c], y)?.into()])
    }
}

/// An integer tensor minus its zero point (scalar, or per channel along axis `per_axis`), as `f64`.
fn centered_f64(t: &Tensor, zp: Option<&Tensor>, per_axis: usize, what: &str) -> Result<Vec<f64>> {
    let mut v = t.to_f64_vec()?;
    let Some(zp) = zp else { return Ok(v) };
    let z = zp.to_f64_vec()?;
    if z.len() == 1 {
        v.iter_mut().for_each(|x| *x -= z[0]);
        return Ok(v);
    }
    let dim = t.shape().get(per_axis).copied().unwrap_or(0);
    if z.len() != dim {
        return Err(Error::ShapeMismatch(format!(
            "{what} zero point has {} values, expected 1 or {dim}",
            z.len()
        )));
    }
    let inner: usize = t.shape()[per_axis + 1..].iter().product();
    for (i, x) in v.iter_mut().enumerate() {
        *x -= z[(i / inner.max(1)) % dim];
    }
    Ok(v)
}

/// `ConvInteger` (opset 10): int32 output.
struct ConvInteger {
    attrs: ConvAttrs,
}

fn build_conv_integer(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(ConvInteger {
        attrs: ConvAttrs::parse(ctx)?,
    }))
}

impl Op for ConvInteger {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "ConvInteger";
        let x = tensor_in(inputs, 0, OP)?;
        let w = tensor_in(inputs, 1, OP)?;
        let xz = opt_tensor_in(inputs, 2, OP)?;
        let wz = opt_tensor_in(inputs, 3, OP)?;
        let (shape, out_shape) = self.attrs.geometry(x.shape(), w.shape(), OP)?;
        let xv = centered_f64(x, xz, 1, "x")?;
        let wv = centered_f64(w, wz, 0, "w")?;
        let n: usize = out_shape.iter().product();
        let mut acc = vec![0f64; n];
        conv_forward(ctx.pool, &shape, &xv, &wv, None, Act::Identity, None, None, &mut acc)?;
        Ok(vec![Tensor::from_vec(
            &out_shape,
            acc.into_iter().map(|v| v as i32).collect::<Vec<i32>>(),
        )?
        .into()])
    }
}

/// `QLinearConv` (opsets 10, 21).
struct QLinearConv {
    attrs: ConvAttrs,
}

fn build_qlinear_conv(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(QLinearConv {
        attrs: ConvAttrs::parse(ctx)?,
    }))
}

impl Op for QLinearConv {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "QLinearConv";
        let x = tensor_in(inputs, 0, OP)?;
        let xs = tensor_in(inputs, 1, OP)?.to_f64_vec()?;
        let xz = opt_tensor_in(inputs, 2, OP)?;
        let w = tensor_in(inputs, 3, OP)?;
        let ws = tensor_in(inputs, 4, OP)?.to_f64_vec()?;
        let wz = opt_tensor_in(inputs, 5, OP)?;
        let ys = tensor_in(inputs, 6, OP)?.to_f64_vec()?;
        let yz = opt_tensor_in(inputs, 7, OP)?;
        let b = opt_tensor_in(inputs, 8, OP)?;
        let (shape, out_shape) = self.attrs.geometry(x.shape(), w.shape(), OP)?;
        let xv = centered_f64(x, xz, 1, "x")?;
        let wv = centered_f64(w, wz, 0, "w")?;
        let bias = b.map(|b| b.to_f64_vec()).transpose()?;
        let n: usize = out_shape.iter().product();
        let mut acc = vec![0f64; n];
        conv_forward(ctx.pool, &shape, &xv, &wv, bias.as_deref(), Act::Identity, None, None, &mut acc)?;
        let m = shape.out_channels;
        if xs.len() != 1 || ys.len() != 1 || (ws.len() != 1 && ws.len() != m) {
            return Err(Error::ShapeMismatch(format!("{OP}: x_scale and y_scale must be scalars and w_scale scalar or per output channel")));
        }
        let out_dt = yz.map(|z| z.dtype()).unwrap_or(x.dtype());
        let zero = match yz {
            Some(z) => z.to_f64_vec()?.first().copied().unwrap_or(0.0),
            None => 0.0,
        };
        let (lo, hi) = match out_dt {
            DType::Uint8 => (0.0, 255.0),
            DType::Int8 => (-128.0, 127.0),
            d => {
                return Err(Error::UnsupportedDtype(format!(
                    "{OP}: output type {d} is not supported"
                )))
            }
        };
        let plane: usize = out_shape[2..].iter().product();
        let q: Vec<f64> = acc
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let wsc = if ws.len() == 1 {
                    ws[0]
                } else {
                    ws[(i / plane.max(1)) % m]
                };
                let f = (xs[0] as f32 * wsc as f32 / ys[0] as f32) as f64;
                (a * f + zero).clamp(lo, hi).round_ties_even()
            })
            .collect();
        let out = if out_dt == DType::Uint8 {
            Tensor::from_vec(&out_shape, q.iter().map(|v| *v as u8).collect::<Vec<u8>>())?
        } else {
            Tensor::from_vec(&out_shape, q.iter().map(|v| *v as i8).collect::<Vec<i8>>())?
        };
        Ok(vec![out.into()])
    }
}

/// `ConvTranspose` (opsets 1, 11, 22).
struct ConvTranspose {
    attrs: ConvAttrs,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
    w_const: Option<Tensor>,
}

fn build_conv_transpose(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let nonneg = |name: &str| -> Result<Option<Vec<usize>>> {
        match ctx.attr_ints(name)? {
            None => Ok(None),
            Some(v) if v.iter().all(|x| *x >= 0) => {
                Ok(Some(v.into_iter().map(|x| x as usize).collect()))
            }
            Some(v) => Err(ctx.invalid(format!(
                "attribute '{name}' must be non-negative, got {v:?}"
            ))),
        }
    };
    Ok(Box::new(ConvTranspose {
        attrs: ConvAttrs::parse(ctx)?,
        output_padding: nonneg("output_padding")?,
        output_shape: nonneg("output_shape")?,
        w_const: widen_const(ctx, 1)?,
    }))
}

impl ConvTranspose {
    /// The window of the equivalent forward convolution (its input is our output) and our output shape.
    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<(Window3, Vec<usize>)> {
        const OP: &str = "ConvTranspose";
        if x.len() < 3 || w.len() != x.len() {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X {x:?} must have rank >= 3 and W {w:?} the same rank"
            )));
        }
        if x[1] != w[0] || x[1] % self.attrs.group != 0 {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X has {} channels but W has shape {w:?} (group {})",
                x[1], self.attrs.group
            )));
        }
        let ns = x.len() - 2;
        let kernel = self.attrs.kernel(w, OP)?;
        let wa = &self.attrs.window;
        let ones = vec![1; ns];
        let strides = wa.strides.clone().unwrap_or_else(|| ones.clone());
        let dil = wa.dilations.clone().unwrap_or_else(|| ones.clone());
        let opad = self.output_padding.clone().unwrap_or_else(|| vec![0; ns]);
        if strides.len() != ns || dil.len() != ns || opad.len() != ns {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: strides, dilations and output_padding need {ns} values"
            )));
        }
        let oshape = self
            .output_shape
            .as_ref()
            .map(|s| s[s.len().saturating_sub(ns)..].to_vec());
        let same = matches!(wa.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let mut pads = match (&wa.pads, same) {
            (Some(p), false) if p.len() == 2 * ns => p.clone(),
            (Some(_), false) => {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: 'pads' needs {} values",
                    2 * ns
                )))
            }
            _ => vec![0; 2 * ns],
        };
        let mut out = vec![0; ns];
        for i in 0..ns {
            let ext = (kernel[i] - 1) * dil[i] + 1;
            let full = strides[i] * (x[2 + i].max(1) - 1) + opad[i] + ext;
            if same {
                let target = oshape
                    .as_ref()
                    .map(|s| s[i])
                    .unwrap_or(x[2 + i] * strides[i]);
                let total = full as isize - target as isize;
                let total = total.max(0) as usize;
                let (b, e) = if wa.auto_pad == AutoPad::SameUpper {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[i] = b;
                pads[ns + i] = e;
                out[i] = target;
            } else if let Some(s) = &oshape {
                out[i] = s[i];
            } else {
                out[i] = full.checked_sub(pads[i] + pads[ns + i]).ok_or_else(|| {
                    Error::ShapeMismatch(format!("{OP}: pads exceed the output size on axis {i}"))
                })?;
            }
        }
        let win = super::window::Window {
            input: out.clone(),
            kernel,
            strides,
            dilations: dil,
            pads,
            out: x[2..].to_vec(),
        };
        let mut shape = vec![x[0], w[1] * self.attrs.group];
        shape.extend(&out);
        Ok((win.as_3d()?, shape))
    }
}

/// Whether every output of the transposed convolution takes at most one tap: stride equal to
/// the kernel, no dilation, no padding, and the output holds every tap (`output_shape` may
/// crop it). The column matrix is then interleaved into the output instead of accumulated.
fn taps_tile_output(win: &Window3) -> bool {
    (0..3).all(|a| win.strides[a] == win.kernel[a] && win.dilations[a] == 1 && win.pad_begin[a] == 0 && win.input[a] >= win.out[a] * win.kernel[a])
}

/// One output channel of a transposed convolution whose taps tile the output
/// ([`taps_tile_output`]): output `(od·kd + a, oh·kh + b, ow·kw + c)` = tap `(a, b, c)` of input
/// position `(od, oh, ow)` plus `bias` (`col`: the channel's `ksz` rows of the column matrix).
/// Outputs past the tiles (`output_padding`) hold the bias.
fn interleave_taps<T: Float>(win: &Window3, col: &[T], bias: T, y: &mut [T]) {
    let [kd, kh, kw] = win.kernel;
    let [od_n, oh_n, ow_n] = win.out;
    let [_, yh, yw] = win.input;
    let in_sz = win.out_size();
    if win.input[0] != od_n * kd || yh != oh_n * kh || yw != ow_n * kw {
        y.fill(bias);
    }
    let tap_row = |t: usize, od: usize, oh: usize| &col[t * in_sz + (od * oh_n + oh) * ow_n..][..ow_n];
    for od in 0..od_n {
        for td in 0..kd {
            for oh in 0..oh_n {
                for th in 0..kh {
                    let yrow = &mut y[((od * kd + td) * yh + oh * kh + th) * yw..][..ow_n * kw];
                    let t0 = (td * kh + th) * kw;
                    match kw {
                        1 => yrow.iter_mut().zip(tap_row(t0, od, oh)).for_each(|(d, v)| *d = *v + bias),
                        2 => {
                            for ((d, a), b) in yrow.chunks_exact_mut(2).zip(tap_row(t0, od, oh)).zip(tap_row(t0 + 1, od, oh)) {
                                d[0] = *a + bias;
                                d[1] = *b + bias;
                            }
                        }
                        _ => {
                            for tw in 0..kw {
                                for (i, v) in tap_row(t0 + tw, od, oh).iter().enumerate() {
                                    yrow[i * kw + tw] = *v + bias;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_transpose_forward<T: GemmElem>(
    pool: &ThreadPool,
    win: &Window3,
    group: usize,
    x_shape: &[usize],
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    out_shape: &[usize],
    y: &mut [T],
) -> Result<()> {
    let (n, c, m) = (x_shape[0], x_shape[1], out_shape[1]);
    let (cg, mg) = (c / group, m / group);
    let ksz = win.kernel_size();
    let in_sz = win.out_size(); // our input spatial = the forward conv's output
    let out_sz = win.in_size();
    let rows = mg * ksz;
    // Overwritten by every product (beta 0).
    let mut scratch = crate::kernels::Scratch::default();
    let col = scratch.slice::<T>(rows * in_sz)?;
    let tiles = taps_tile_output(win);
    for img in 0..n {
        for g in 0..group {
            let xg = &x[(img * c + g * cg) * in_sz..(img * c + (g + 1) * cg) * in_sz];
            let wg = &w[g * cg * rows..(g + 1) * cg * rows];
            // col (rows × in_sz) = W_g^T (rows × cg) · X_g (cg × in_sz)
            let a = MatRef {
                data: wg,
                rs: 1,
                cs: rows,
            };
            // gemm_par runs on the calling thread alone when the pool has one thread.
            crate::kernels::gemm::gemm_par(
                pool,
                rows,
                in_sz,
                cg,
                T::ONE,
                a,
                MatRef::row_major(xg, in_sz),
                T::ZERO,
                col,
                in_sz,
                1,
            )?;
            // Output channels are independent (each reads its own ksz rows of col): split
            // them over the threads.
            let yg = &mut y[(img * m + g * mg) * out_sz..(img * m + (g + 1) * mg) * out_sz];
            let yp = crate::kernels::SendPtr::new(yg);
            let col = &*col;
            pool.parallel_for(mg, (1 << 14) / (out_sz * ksz.min(4)).max(1) + 1, |j0, j1| {
                for j in j0..j1 {
                    // SAFETY: channel j's plane is this task's only.
                    let plane = unsafe { yp.slice(j * out_sz, out_sz) };
                    let b = bias.map(|b| b[g * mg + j]).unwrap_or(T::ZERO);
                    let ccol = &col[j * ksz * in_sz..(j + 1) * ksz * in_sz];
                    if tiles {
                        interleave_taps(win, ccol, b, plane);
                    } else {
                        plane.fill(b);
                        col2im_rows(win, ccol, 0..ksz, plane);
                    }
                }
            });
        }
    }
    Ok(())
}

impl Op for ConvTranspose {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "ConvTranspose";
        let x = tensor_in(inputs, 0, OP)?;
        let w = tensor_in(inputs, 1, OP)?;
        let b = opt_tensor_in(inputs, 2, OP)?;
        let dt = x.dtype();
        if !is_compute_float(dt) || w.dtype() != dt || b.is_some_and(|b| b.dtype() != dt) {
            return Err(Error::UnsupportedDtype(format!(
                "{OP}: X, W and B must share a float type, got X {dt}, W {}",
                w.dtype()
            )));
        }
        let (win, out_shape) = self.geometry(x.shape(), w.shape())?;
        if let Some(b) = b {
            if b.len() != out_shape[1] {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: B has {} values for {} output channels",
                    b.len(),
                    out_shape[1]
                )));
            }
        }
        let xw = widen(x)?;
        let ww = match &self.w_const {
            Some(t) => Cow::Borrowed(t),
            None => widen(w)?,
        };
        let bw = b.map(widen).transpose()?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let bias = match &bw { Some(b) => Some(b.as_slice::<T>()?), None => None };
            let (xv, wv) = (xw.as_slice::<T>()?, ww.as_slice::<T>()?);
            // Every output plane is filled (bias, then taps).
            Tensor::build_uninit::<T>(xw.dtype(), &out_shape, |o| {
                conv_transpose_forward(ctx.pool, &win, self.attrs.group, x.shape(), xv, wv, bias, &out_shape, o)
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

/// `DeformConv` (opsets 19, 22): 2-D convolution sampling the input at learned offsets
/// (bilinear, zero outside), optionally modulated by a mask; deformable im2col + GEMM.
struct DeformConv {
    attrs: ConvAttrs,
    offset_group: usize,
}

fn build_deform_conv(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let og = ctx.attr_i("offset_group", 1)?;
    if og < 1 {
        return Err(ctx.invalid(format!("attribute 'offset_group' must be >= 1, got {og}")));
    }
    Ok(Box::new(DeformConv {
        attrs: ConvAttrs::parse(ctx)?,
        offset_group: og as usize,
    }))
}

impl Op for DeformConv {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "DeformConv";
        let x = tensor_in(inputs, 0, OP)?;
        let w = tensor_in(inputs, 1, OP)?;
        let off = tensor_in(inputs, 2, OP)?;
        let b = opt_tensor_in(inputs, 3, OP)?;
        let mask = opt_tensor_in(inputs, 4, OP)?;
        if x.rank() != 4 {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: only 2-D convolutions are supported, X is {:?}",
                x.shape()
            )));
        }
        let (shape, out_shape) = self.attrs.geometry(x.shape(), w.shape(), OP)?;
        let win = shape.window;
        let (n, c, m, g) = (
            shape.batch,
            shape.in_channels,
            shape.out_channels,
            shape.group,
        );
        let (kh, kw) = (win.kernel[1], win.kernel[2]);
        let k = kh * kw;
        let (oh, ow) = (win.out[1], win.out[2]);
        let (ih, iw) = (win.input[1], win.input[2]);
        let og = self.offset_group;
        if c % og != 0
            || off.shape() != [n, og * 2 * k, oh, ow]
            || mask.is_some_and(|mk| mk.shape() != [n, og * k, oh, ow])
        {
            return Err(Error::ShapeMismatch(format!("{OP}: offset {:?} (or mask) does not fit offset_group {og} and output {out_shape:?}", off.shape())));
        }
        let dt = x.dtype();
        let (xw, ww, ow_t) = (widen(x)?, widen(w)?, widen(off)?);
        let bw = b.map(widen).transpose()?;
        let mw = mask.map(widen).transpose()?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let (xv, wv, ov) = (xw.as_slice::<T>()?, ww.as_slice::<T>()?, ow_t.as_slice::<T>()?);
            let mv = match &mw { Some(t) => Some(t.as_slice::<T>()?), None => None };
            let bias = match &bw { Some(t) => Some(t.as_slice::<T>()?), None => None };
            let (cg, mg) = (c / g, m / g);
            let osz = oh * ow;
            let kdim = cg * k;
            Tensor::build::<T>(xw.dtype(), &out_shape, |o| {
                let mut col = vec![T::ZERO; kdim * osz];
                for img in 0..n {
                    for grp in 0..g {
                        for ci in 0..cg {
                            let ch = grp * cg + ci;
                            let ogi = ch / (c / og);
                            let plane = &xv[(img * c + ch) * ih * iw..(img * c + ch + 1) * ih * iw];
                            for tap in 0..k {
                                let (ti, tj) = (tap / kw, tap % kw);
                                let row = &mut col[(ci * k + tap) * osz..(ci * k + tap + 1) * osz];
                                for y in 0..oh {
                                    for xo in 0..ow {
                                        let p = y * ow + xo;
                                        let oidx = ((img * og + ogi) * 2 * k + 2 * tap) * osz + p;
                                        let hh = (y * win.strides[1] + ti * win.dilations[1]) as f64 - win.pad_begin[1] as f64 + ov[oidx].to_f64();
                                        let ww_ = (xo * win.strides[2] + tj * win.dilations[2]) as f64 - win.pad_begin[2] as f64 + ov[oidx + osz].to_f64();
                                        let (h0, w0) = (hh.floor(), ww_.floor());
                                        let (fh, fw) = (hh - h0, ww_ - w0);
                                        let mut v = 0.0;
                                        for (dy, wy) in [(0i64, 1.0 - fh), (1, fh)] {
                                            for (dx, wx) in [(0i64, 1.0 - fw), (1, fw)] {
                                                let (yy, xx) = (h0 as i64 + dy, w0 as i64 + dx);
                                                if yy >= 0 && (yy as usize) < ih && xx >= 0 && (xx as usize) < iw {
                                                    v += wy * wx * plane[yy as usize * iw + xx as usize].to_f64();
                                                }
                                            }
                                        }
                                        if let Some(mv) = mv {
                                            v *= mv[((img * og + ogi) * k + tap) * osz + p].to_f64();
                                        }
                                        row[p] = T::from_f64(v);
                                    }
                                }
                            }
                        }
                        let yg = &mut o[(img * m + grp * mg) * osz..(img * m + (grp + 1) * mg) * osz];
                        for (j, plane) in yg.chunks_mut(osz.max(1)).enumerate() {
                            let bv = bias.map(|b| b[grp * mg + j]).unwrap_or(T::ZERO);
                            plane.iter_mut().for_each(|v| *v = bv);
                        }
                        let wg = &wv[grp * mg * kdim..(grp + 1) * mg * kdim];
                        crate::kernels::gemm::gemm_par(ctx.pool, mg, osz, kdim, T::ONE, MatRef::row_major(wg, kdim), MatRef::row_major(&col, osz), T::ONE, yg, osz, 1)?;
                    }
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn conv_basic_and_padding() {
        // ONNX test_basic_conv_with_padding / without_padding.
        let x = tf(&[1, 1, 5, 5], &iota(25));
        let w = tf(&[1, 1, 3, 3], &[1.; 9]);
        let y = &run_op(
            "Conv",
            11,
            vec![("pads", ints(&[1, 1, 1, 1]))],
            vec![Some(x.clone()), Some(w.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 5, 5]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[
                12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93.,
                144., 153., 162., 111., 72., 111., 117., 123., 84.
            ]
        );
        let y = &run_op(
            "Conv",
            11,
            vec![],
            vec![Some(x.clone()), Some(w.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[54., 63., 72., 99., 108., 117., 144., 153., 162.]
        );
        // Strides 2 with asymmetric padding (test_conv_with_strides_and_asymmetric_padding), on 7x5.
        let x = tf(&[1, 1, 7, 5], &iota(35));
        let y = &run_op(
            "Conv",
            11,
            vec![("pads", ints(&[1, 0, 1, 0])), ("strides", ints(&[2, 2]))],
            vec![Some(x.clone()), Some(w.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 4, 2]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[21., 33., 99., 117., 189., 207., 171., 183.]
        );
        // SAME_LOWER autopad with stride 2 (test_conv_with_autopad_same).
        let x = tf(&[1, 1, 5, 5], &iota(25));
        let y = &run_op(
            "Conv",
            11,
            vec![
                ("auto_pad", AttrValue::String(b"SAME_LOWER".to_vec())),
                ("strides", ints(&[2, 2])),
            ],
            vec![Some(x), Some(w)],
            1,
        )
        .unwrap()[0];
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[12., 27., 24., 63., 108., 81., 72., 117., 84.]
        );
    }

    #[test]
    fn conv_groups_depthwise_bias_1d() {
        // Depthwise 1-D: 2 channels, kernel 2, bias.
        let x = tf(&[1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
        let w = tf(&[2, 1, 2], &[1., 1., 1., -1.]);
        let b = tf(&[2], &[10., 20.]);
        let y = &run_op(
            "Conv",
            11,
            vec![("group", AttrValue::Int(2))],
            vec![Some(x.clone()), Some(w), Some(b)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[13., 15., 19., 19.]);
        // Pointwise with 2 groups: each output channel scales its group's input channel.
        let w = tf(&[2, 1, 1], &[2., 3.]);
        let y = &run_op(
            "Conv",
            11,
            vec![("group", AttrValue::Int(2))],
            vec![Some(x.clone()), Some(w)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2., 4., 6., 12., 15., 18.]);
        // Dilated 1-D full conv: kernel 2, dilation 2 over 2 channels.
        let w = tf(&[1, 2, 2], &[1., 1., 1., 1.]);
        let y = &run_op(
            "Conv",
            11,
            vec![("dilations", ints(&[2]))],
            vec![Some(x), Some(w)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1. + 3. + 4. + 6.]);
        // Bad group.
        let x = tf(&[1, 3, 3], &[0.; 9]);
        let w = tf(&[2, 1, 2], &[0.; 4]);
        assert!(run_op(
            "Conv",
            11,
            vec![("group", AttrValue::Int(2))],
            vec![Some(x), Some(w)],
            1
        )
        .is_err());
    }

    #[test]
    fn conv_3d_matches_naive() {
        let x = tf(
            &[1, 2, 3, 4, 4],
            &(0..96)
                .map(|i| ((i * 7) % 11) as f32 - 5.)
                .collect::<Vec<_>>(),
        );
        let w = tf(
            &[3, 2, 2, 3, 2],
            &(0..72)
                .map(|i| ((i * 5) % 7) as f32 - 3.)
                .collect::<Vec<_>>(),
        );
        let attrs = vec![
            ("pads", ints(&[1, 0, 1, 0, 0, 0])),
            ("strides", ints(&[1, 2, 1])),
        ];
        let y = &run_op("Conv", 11, attrs, vec![Some(x.clone()), Some(w.clone())], 1).unwrap()[0];
        let (xv, wv) = (x.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
        // out: D=(3+1-2)+1=3, H=(4+0-3)/2+1=1, W=(4+1-2)+1=4
        assert_eq!(y.shape(), &[1, 3, 3, 1, 4]);
        let mut want = vec![0f32; 36];
        for m in 0..3 {
            for od in 0..3 {
                for ow in 0..4 {
                    let mut s = 0.;
                    for c in 0..2 {
                        for kd in 0..2 {
                            for kh in 0..3 {
                                for kw in 0..2 {
                                    let (id, ih, iw) = (
                                        od as isize + kd as isize - 1,
                                        kh as isize,
                                        ow as isize + kw as isize - 1,
                                    );
                                    if id < 0 || id >= 3 || iw < 0 || iw >= 4 {
                                        continue;
                                    }
                                    s += xv[((c * 3 + id as usize) * 4 + ih as usize) * 4
                                        + iw as usize]
                                        * wv[(((m * 2 + c) * 2 + kd) * 3 + kh) * 2 + kw];
                                }
                            }
                        }
                    }
                    want[(m * 3 + od) * 4 + ow] = s;
                }
            }
        }
        assert_eq!(y.as_slice::<f32>().unwrap(), &want[..]);
    }

    #[test]
    fn conv_transpose_matches_the_definition() {
        // Taps tiling the output (stride = kernel: interleaved, with output_padding past the
        // tiles, kernels of 1, 2 and 3 columns, 3-D) and overlapping taps (accumulated), with
        // groups, batch 2, bias, on 1 and 3 threads, against the scatter definition.
        struct Case {
            x: Vec<usize>,
            k: Vec<usize>,
            s: Vec<usize>,
            pads: Vec<usize>,
            dil: Vec<usize>,
            opad: Vec<usize>,
            group: usize,
            m: usize,
        }
        let c = |x: &[usize], k: &[usize], s: &[usize], pads: &[usize], dil: &[usize], opad: &[usize], group: usize, m: usize| Case {
            x: x.to_vec(),
            k: k.to_vec(),
            s: s.to_vec(),
            pads: pads.to_vec(),
            dil: dil.to_vec(),
            opad: opad.to_vec(),
            group,
            m,
        };
        let cases = [
            c(&[1, 4, 5, 7], &[2, 2], &[2, 2], &[0; 4], &[1, 1], &[0, 0], 1, 3),
            c(&[2, 4, 3, 4], &[3, 3], &[3, 3], &[0; 4], &[1, 1], &[1, 2], 2, 4),
            c(&[1, 3, 4, 5], &[1, 2], &[1, 2], &[0; 4], &[1, 1], &[0, 0], 1, 2),
            c(&[1, 3, 4, 5], &[2, 1], &[2, 1], &[0; 4], &[1, 1], &[0, 0], 1, 2),
            c(&[1, 2, 3, 3, 4], &[1, 2, 2], &[1, 2, 2], &[0; 6], &[1, 1, 1], &[0, 0, 0], 1, 3),
            c(&[1, 4, 5, 7], &[2, 2], &[2, 2], &[1, 0, 1, 0], &[1, 1], &[0, 0], 1, 3),
            c(&[2, 4, 5, 6], &[4, 4], &[2, 2], &[1, 1, 1, 1], &[1, 1], &[0, 0], 2, 2),
            c(&[1, 3, 6, 5], &[3, 3], &[1, 1], &[1, 1, 1, 1], &[2, 2], &[0, 0], 1, 2),
        ];
        for cs in &cases {
            let ns = cs.x.len() - 2;
            let (n, ci) = (cs.x[0], cs.x[1]);
            let (cg, mg) = (ci / cs.group, cs.m / cs.group);
            let mut wshape = vec![ci, mg];
            wshape.extend(&cs.k);
            let out: Vec<usize> = (0..ns).map(|i| (cs.x[2 + i] - 1) * cs.s[i] + cs.opad[i] + (cs.k[i] - 1) * cs.dil[i] + 1 - cs.pads[i] - cs.pads[ns + i]).collect();
            let in_sz: usize = cs.x[2..].iter().product();
            let (out_sz, ksz): (usize, usize) = (out.iter().product(), cs.k.iter().product());
            let xv: Vec<f32> = (0..n * ci * in_sz).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
            let wv: Vec<f32> = (0..ci * mg * ksz).map(|i| ((i * 53) % 19) as f32 * 0.25 - 2.0).collect();
            let bv: Vec<f32> = (0..cs.m).map(|i| i as f32 * 0.5 - 1.0).collect();
            // Scatter every input value through every tap.
            let unravel = |mut i: usize, dims: &[usize]| -> Vec<usize> {
                let mut v = vec![0; dims.len()];
                for a in (0..dims.len()).rev() {
                    v[a] = i % dims[a];
                    i /= dims[a];
                }
                v
            };
            let mut want = vec![0f32; n * cs.m * out_sz];
            for img in 0..n {
                for (oc, b) in bv.iter().enumerate() {
                    want[(img * cs.m + oc) * out_sz..][..out_sz].iter_mut().for_each(|v| *v = *b);
                }
                for ch in 0..ci {
                    let g = ch / cg;
                    for p in 0..in_sz {
                        let pi = unravel(p, &cs.x[2..]);
                        for t in 0..ksz {
                            let ti = unravel(t, &cs.k);
                            let o: Vec<isize> = (0..ns).map(|a| (pi[a] * cs.s[a] + ti[a] * cs.dil[a]) as isize - cs.pads[a] as isize).collect();
                            if o.iter().zip(&out).any(|(v, d)| *v < 0 || *v >= *d as isize) {
                                continue;
                            }
                            let flat = o.iter().zip(&out).fold(0, |acc, (v, d)| acc * d + *v as usize);
                            for j in 0..mg {
                                want[(img * cs.m + g * mg + j) * out_sz + flat] += xv[(img * ci + ch) * in_sz + p] * wv[(ch * mg + j) * ksz + t];
                            }
                        }
                    }
                }
            }
            for threads in [1, 3] {
                let iv = |v: &[usize]| ints(&v.iter().map(|x| *x as i64).collect::<Vec<_>>());
                let attrs = vec![("kernel_shape", iv(&cs.k)), ("strides", iv(&cs.s)), ("pads", iv(&cs.pads)), ("dilations", iv(&cs.dil)), ("output_padding", iv(&cs.opad)), ("group", AttrValue::Int(cs.group as i64))];
                let inputs = vec![Some(tf(&cs.x, &xv)), Some(tf(&wshape, &wv)), Some(tf(&[cs.m], &bv))];
                let y = run_op_with("ConvTranspose", 11, attrs, inputs, &[1], 1, threads).unwrap();
                let mut yshape = vec![n, cs.m];
                yshape.extend(&out);
                assert_eq!(y[0].shape(), &yshape[..]);
                for (i, (g, e)) in y[0].as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "x {:?} k {:?} s {:?} pads {:?}, {threads} threads: [{i}] {g} vs {e}", cs.x, cs.k, cs.s, cs.pads);
                }
            }
        }
    }

    #[test]
    fn conv_transpose_cases() {
        // test_convtranspose_1d: x [1,1,3] = [0,1,2], W [1,2,3] ones -> [[0,1,3,3,2],[0,1,3,3,2]]
        let x = tf(&[1, 1, 3], &[0., 1., 2.]);
        let w = tf(&[1, 2, 3], &[1.; 6]);
        let y = &run_op(
            "ConvTranspose",
            11,
            vec![],
            vec![Some(x.clone()), Some(w.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[1, 2, 5]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[0., 1., 3., 3., 2., 0., 1., 3., 3., 2.]
        );
        // Stride 2, pads 1, output_padding 1: full = 2*2+1+3 = 8, minus 2 pads -> 6.
        let y = &run_op(
            "ConvTranspose",
            11,
            vec![
                ("strides", ints(&[2])),
                ("pads", ints(&[1, 1])),
                ("output_padding", ints(&[1])),
            ],
            vec![Some(x.clone()), Some(w.clone())],
            1,
        )
        .unwrap()[0];
        // Unpadded length-8 result: [0,0,1,1,3,2,2,0]; crop 1 each side -> [0,1,1,3,2,2]
        assert_eq!(y.shape(), &[1, 2, 6]);
        assert_eq!(
            &y.as_slice::<f32>().unwrap()[..6],
            &[0., 1., 1., 3., 2., 2.]
        );
        // output_shape with SAME_UPPER.
        let y = &run_op(
            "ConvTranspose",
            11,
            vec![
                ("strides", ints(&[2])),
                ("auto_pad", AttrValue::String(b"SAME_UPPER".to_vec())),
            ],
            vec![Some(x), Some(w)],
            1,
        )
        .unwrap()[0];
        // target 6, full = 7, total 1 -> pads (0,1): [0,0,1,1,3,2]
        assert_eq!(
            &y.as_slice::<f32>().unwrap()[..6],
            &[0., 0., 1., 1., 3., 2.]
        );
    }

    #[test]
    fn conv_integer_and_qlinear() {
        use crate::tensor::Tensor;
        let x = Tensor::from_slice(&[1, 1, 3, 3], &[2u8, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
        let w = Tensor::from_slice(&[1, 1, 2, 2], &[1u8, 1, 1, 1]).unwrap();
        let xz = Tensor::from_slice(&[], &[1u8]).unwrap();
        let y = &run_op(
            "ConvInteger",
            10,
            vec![],
            vec![Some(x), Some(w), Some(xz), None],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<i32>().unwrap(), &[12, 16, 24, 28]);
    }
}
