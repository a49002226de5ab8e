//! Sampling grids: AffineGrid (opset 20) and GridSample (opsets 16, 20, 22).

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::float::Float;
use crate::ops::{tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.add("AffineGrid", build_affine_grid);
    r.add("GridSample", build_grid_sample);
}

struct AffineGrid {
    align_corners: bool,
}

fn build_affine_grid(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(AffineGrid {
        align_corners: ctx.attr_i("align_corners", 0)? != 0,
    }))
}

/// Normalized base coordinates of `n` samples along one axis.
fn base_coords(n: usize, align_corners: bool) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if align_corners {
                if n == 1 {
                    -1.0
                } else {
                    -1.0 + 2.0 * i as f64 / (n - 1) as f64
                }
            } else {
                -1.0 + (2 * i + 1) as f64 / n as f64
            }
        })
        .collect()
}

impl Op for AffineGrid {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "AffineGrid";
        let theta = tensor_in(inputs, 0, OP)?;
        let size: Vec<usize> = tensor_in(inputs, 1, OP)?
            .to_i64_vec()?
            .into_iter()
            .map(|v| v.max(0) as usize)
            .collect();
        let nd = size.len().saturating_sub(2);
        if !(nd == 2 || nd == 3) || theta.shape() != [size[0], nd, nd + 1] {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: theta {:?} does not fit size {size:?}",
                theta.shape()
            )));
        }
        let n = size[0];
        let spatial = &size[2..];
        let coords: Vec<Vec<f64>> = spatial
            .iter()
            .map(|s| base_coords(*s, self.align_corners))
            .collect();
        let pts: usize = spatial.iter().product();
        let dt = theta.dtype();
        let tw = widen(theta)?;
        let mut shape = vec![n];
        shape.extend(spatial);
        shape.push(nd);
        let y = crate::with_float!(tw.dtype(), OP, T => {
            let th = tw.as_slice::<T>()?;
            Tensor::build::<T>(tw.dtype(), &shape, |o| {
                for b in 0..n {
                    let m = &th[b * nd * (nd + 1)..(b + 1) * nd * (nd + 1)];
                    for p in 0..pts {
                        // Homogeneous point (x, y[, z], 1), x along the last axis.
                        let mut hp = vec![1.0f64; nd + 1];
                        let mut rem = p;
                        for a in (0..nd).rev() {
                            let idx = rem % spatial[a];
                            rem /= spatial[a];
                            hp[nd - 1 - a] = coords[a][idx];
                        }
                        for r in 0..nd {
                            let mut s = 0.0;
                            for c in 0..=nd {
                                s += m[r * (nd + 1) + c].to_f64() * hp[c];
                            }
                            o[(b * pts + p) * nd + r] = T::from_f64(s);
                        }
                    }
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Interp {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

struct GridSample {
    mode: Interp,
    padding: Padding,
    align_corners: bool,
}

fn build_grid_sample(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let mode = match ctx
        .attr_s(
            "mode",
            if ctx.opset >= 20 {
                "linear"
            } else {
                "bilinear"
            },
        )?
        .as_str()
    {
        "nearest" => Interp::Nearest,
        "linear" | "bilinear" => Interp::Linear,
        "cubic" | "bicubic" => Interp::Cubic,
        m => return Err(ctx.invalid(format!("mode '{m}' is not nearest, linear or cubic"))),
    };
    let padding = match ctx.attr_s("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        p => {
            return Err(ctx.invalid(format!(
                "padding_mode '{p}' is not zeros, border or reflection"
            )))
        }
    };
    Ok(Box::new(GridSample {
        mode,
        padding,
        align_corners: ctx.attr_i("align_corners", 0)? != 0,
    }))
}

fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn cubic_coeffs(t: f64) -> [f64; 4] {
    let a = -0.75;
    let x = t.abs();
    [
        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((a * (2.0 - x) - 5.0 * a) * (2.0 - x) + 8.0 * a) * (2.0 - x) - 4.0 * a,
    ]
}

impl GridSample {
    /// Resolve an integer index on an axis of length `d` with borders (lo, hi); None = zero.
    fn index(&self, i: i64, d: usize, lo: f64, hi: f64) -> Option<usize> {
        match self.padding {
            Padding::Zeros => (i >= 0 && (i as usize) < d).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, d as i64 - 1) as usize),
            Padding::Reflection => {
                Some((reflect(i as f64, lo, hi) as i64).clamp(0, d as i64 - 1) as usize)
            }
        }
    }
}

impl Op for GridSample {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "GridSample";
        let x = tensor_in(inputs, 0, OP)?;
        let grid = tensor_in(inputs, 1, OP)?;
        let nd = x.rank().saturating_sub(2);
        if nd == 0
            || nd > 3
            || grid.rank() != nd + 2
            || grid.shape()[0] != x.shape()[0]
            || grid.shape()[nd + 1] != nd
        {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X {:?} and grid {:?} do not fit",
                x.shape(),
                grid.shape()
            )));
        }
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let dims = &x.shape()[2..];
        let in_sz: usize = dims.iter().product();
        let out_sp = &grid.shape()[1..=nd];
        let pts: usize = out_sp.iter().product();
        let mut out_shape = vec![n, c];
        out_shape.extend(out_sp);
        let border: Vec<(f64, f64)> = dims
            .iter()
            .map(|d| {
                if self.align_corners {
                    (0.0, *d as f64 - 1.0)
                } else {
                    (-0.5, *d as f64 - 0.5)
                }
            })
            .collect();
        let in_strides = crate::ops::common::strides_of(dims);
        let dt = x.dtype();
        let (xw, gw) = (widen(x)?, widen(grid)?);
        let gv: Vec<f64> = gw.to_f64_vec()?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build::<T>(xw.dtype(), &out_shape, |o| {
                let mut taps: Vec<Vec<(Option<usize>, f64)>> = vec![Vec::new(); nd];
                for b in 0..n {
                    for p in 0..pts {
                        let g = &gv[(b * pts + p) * nd..(b * pts + p + 1) * nd];
                        for a in 0..nd {
                            // Grid components are (x, y, z): reversed axis order.
                            let v = g[nd - 1 - a];
                            let d = dims[a];
                            let mut xc = if self.align_corners { (v + 1.0) / 2.0 * (d as f64 - 1.0) } else { ((v + 1.0) * d as f64 - 1.0) / 2.0 };
                            xc = xc as f32 as f64;
                            if self.mode == Interp::Nearest {
                                xc = xc.round_ties_even();
                            }
                            let (lo, hi) = border[a];
                            if xc < lo || xc > hi {
                                match self.padding {
                                    Padding::Border => xc = xc.clamp(0.0, d as f64 - 1.0),
                                    Padding::Reflection => xc = reflect(xc, lo, hi),
                                    Padding::Zeros => {}
                                }
                            }
                            taps[a].clear();
                            match self.mode {
                                Interp::Nearest => taps[a].push((self.index(xc as i64, d, lo, hi), 1.0)),
                                Interp::Linear => {
                                    let x0 = xc.floor();
                                    let f = xc - x0;
                                    taps[a].push((self.index(x0 as i64, d, lo, hi), 1.0 - f));
                                    taps[a].push((self.index(x0 as i64 + 1, d, lo, hi), f));
                                }
                                Interp::Cubic => {
                                    let x0 = xc.floor();
                                    let cf = cubic_coeffs(xc - x0);
                                    for (k, w) in cf.iter().enumerate() {
                                        taps[a].push((self.index(x0 as i64 - 1 + k as i64, d, lo, hi), *w));
                                    }
                                }
                            }
                        }
                        for ch in 0..c {
                            let plane = &xv[(b * c + ch) * in_sz..(b * c + ch + 1) * in_sz];
                            let mut acc = 0.0f64;
                            // Iterate the tap combinations.
                            let counts: Vec<usize> = taps.iter().map(|t| t.len()).collect();
                            let total: usize = counts.iter().product();
                            for combo in 0..total {
                                let mut rem = combo;
                                let mut w = 1.0;
                                let mut off = Some(0usize);
                                for a in (0..nd).rev() {
                                    let (idx, wt) = taps[a][rem % counts[a]];
                                    rem /= counts[a];
                                    w *= wt;
                                    off = match (off, idx) {
                                        (Some(o), Some(i)) => Some(o + i * in_strides[a]),
                                        _ => None,
                                    };
                                }
                                if let Some(off) = off {
                                    acc += w * plane[off].to_f64();
                                }
                            }
                            o[(b * c + ch) * pts + p] = T::from_f64(acc);
                        }
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
    use crate::tensor::Tensor;

    #[test]
    fn affine_identity_and_sample() {
        let theta = tf(&[1, 2, 3], &[1., 0., 0., 0., 1., 0.]);
        let size = Tensor::from_slice(&[4], &[1i64, 1, 2, 2]).unwrap();
        let g = &run_op(
            "AffineGrid",
            20,
            vec![("align_corners", AttrValue::Int(1))],
            vec![Some(theta), Some(size)],
            1,
        )
        .unwrap()[0];
        assert_eq!(g.shape(), &[1, 2, 2, 2]);
        assert_eq!(
            g.as_slice::<f32>().unwrap(),
            &[-1., -1., 1., -1., -1., 1., 1., 1.]
        );
        let x = tf(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = &run_op(
            "GridSample",
            20,
            vec![("align_corners", AttrValue::Int(1))],
            vec![Some(x.clone()), Some(g.clone())],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[1., 2., 3., 4.], 1e-6);
        // Centre point, bilinear -> mean.
        let g0 = tf(&[1, 1, 1, 2], &[0., 0.]);
        let y = &run_op("GridSample", 20, vec![], vec![Some(x), Some(g0)], 1).unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[2.5], 1e-6);
    }
}
