//! Sliding-window geometry shared by Conv, ConvTranspose and the pooling operators:
//! kernel, strides, dilations, pads and `auto_pad`, resolved against an input's spatial shape.

use crate::error::{Error, Result};
use crate::ops::BuildContext;

/// The `auto_pad` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(ctx: &BuildContext) -> Result<AutoPad> {
        Ok(match ctx.attr_s("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            s => {
                return Err(ctx.invalid(format!(
                    "auto_pad '{s}' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"
                )))
            }
        })
    }
}

/// Window attributes as written on the node (kernel may come from the weights at run time).
#[derive(Debug, Clone)]
pub struct WindowAttrs {
    pub kernel: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    /// Begin pads then end pads, as in ONNX.
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

fn positive(ctx: &BuildContext, name: &str) -> Result<Option<Vec<usize>>> {
    match ctx.attr_ints(name)? {
        None => Ok(None),
        Some(v) => {
            if v.iter().any(|x| *x < 1) {
                return Err(ctx.invalid(format!(
                    "attribute '{name}' must hold positive values, got {v:?}"
                )));
            }
            Ok(Some(v.into_iter().map(|x| x as usize).collect()))
        }
    }
}

impl WindowAttrs {
    pub fn parse(ctx: &BuildContext) -> Result<WindowAttrs> {
        let pads = match ctx.attr_ints("pads")? {
            None => None,
            Some(v) => {
                if v.iter().any(|x| *x < 0) || v.len() % 2 != 0 {
                    return Err(ctx.invalid(format!(
                        "attribute 'pads' must hold 2 non-negative values per axis, got {v:?}"
                    )));
                }
                Some(v.into_iter().map(|x| x as usize).collect())
            }
        };
        Ok(WindowAttrs {
            kernel: positive(ctx, "kernel_shape")?,
            strides: positive(ctx, "strides")?,
            dilations: positive(ctx, "dilations")?,
            pads,
            auto_pad: AutoPad::parse(ctx)?,
            ceil_mode: ctx.attr_i("ceil_mode", 0)? != 0,
        })
    }

    /// Resolve against `input` spatial dims with `kernel` (the attribute's when given).
    pub fn resolve(&self, input: &[usize], kernel: &[usize], op: &str) -> Result<Window> {
        let n = input.len();
        let get = |v: &Option<Vec<usize>>, what: &str| -> Result<Vec<usize>> {
            match v {
                None => Ok(vec![1; n]),
                Some(v) if v.len() == n => Ok(v.clone()),
                Some(v) => Err(Error::ShapeMismatch(format!(
                    "{op}: '{what}' has {} values for {n} spatial axes",
                    v.len()
                ))),
            }
        };
        if kernel.len() != n {
            return Err(Error::ShapeMismatch(format!(
                "{op}: kernel has {} axes but the input has {n} spatial axes",
                kernel.len()
            )));
        }
        let strides = get(&self.strides, "strides")?;
        let dilations = get(&self.dilations, "dilations")?;
        let mut pads = match &self.pads {
            None => vec![0; 2 * n],
            Some(p) if p.len() == 2 * n => p.clone(),
            Some(p) => {
                return Err(Error::ShapeMismatch(format!(
                    "{op}: 'pads' has {} values for {n} spatial axes",
                    p.len()
                )))
            }
        };
        let mut out = vec![0; n];
        for i in 0..n {
            let ext = dilations[i] * (kernel[i] - 1) + 1;
            match self.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    out[i] = input[i].div_ceil(strides[i]);
                    let total = ((out[i].max(1) - 1) * strides[i] + ext).saturating_sub(input[i]);
                    let small = total / 2;
                    let (b, e) = if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    pads[i] = b;
                    pads[n + i] = e;
                }
                AutoPad::Valid | AutoPad::NotSet => {
                    if self.auto_pad == AutoPad::Valid {
                        pads[i] = 0;
                        pads[n + i] = 0;
                    }
                    let padded = input[i] + pads[i] + pads[n + i];
                    if padded < ext {
                        return Err(Error::ShapeMismatch(format!(
                            "{op}: kernel extent {ext} on axis {i} exceeds the padded input size {padded}"
                        )));
                    }
                    let span = padded - ext;
                    out[i] = if self.ceil_mode && self.auto_pad == AutoPad::NotSet {
                        let mut o = span.div_ceil(strides[i]) + 1;
                        // The last window must start inside the input or its begin padding.
                        if (o - 1) * strides[i] >= input[i] + pads[i] {
                            o -= 1;
                        }
                        o
                    } else {
                        span / strides[i] + 1
                    };
                }
            }
        }
        Ok(Window {
            input: input.to_vec(),
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads,
            out,
        })
    }
}

/// A resolved window: every vector has one entry per spatial axis (`pads`: begins then ends).
#[derive(Debug, Clone)]
pub struct Window {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub out: Vec<usize>,
}

impl Window {
    /// The window padded up to 3 spatial axes (leading axes of size 1), for 3-D kernels.
    pub fn as_3d(&self) -> Result<Window3> {
        let n = self.input.len();
        if n > 3 {
            return Err(Error::ShapeMismatch(format!(
                "{n} spatial axes are not supported (at most 3)"
            )));
        }
        let lead = 3 - n;
        let pad3 = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut r = [fill; 3];
            r[lead..].copy_from_slice(&v[..n]);
            r
        };
        Ok(Window3 {
            input: pad3(&self.input, 1),
            kernel: pad3(&self.kernel, 1),
            strides: pad3(&self.strides, 1),
            dilations: pad3(&self.dilations, 1),
            pad_begin: pad3(&self.pads[..n], 0),
            pad_end: pad3(&self.pads[n..], 0),
            out: pad3(&self.out, 1),
        })
    }
}

pub use crate::kernels::conv::Window3;
