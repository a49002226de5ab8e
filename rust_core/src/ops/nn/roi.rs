//! Region-of-interest pooling: RoiAlign (opsets 10, 16) and MaxRoiPool (opset 1).

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::float::Float;
use crate::ops::{tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.add("RoiAlign", build_roi_align);
    r.add("MaxRoiPool", build_max_roi_pool);
}

struct RoiAlign {
    half_pixel: bool,
    max_mode: bool,
    out_h: usize,
    out_w: usize,
    sampling_ratio: i64,
    spatial_scale: f32,
}

fn build_roi_align(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let default_ct = if ctx.opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half_pixel = match ctx
        .attr_s("coordinate_transformation_mode", default_ct)?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => {
            return Err(ctx.invalid(format!(
                "coordinate_transformation_mode '{m}' is not half_pixel or output_half_pixel"
            )))
        }
    };
    let max_mode = match ctx.attr_s("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        m => return Err(ctx.invalid(format!("mode '{m}' is not avg or max"))),
    };
    let (oh, ow) = (
        ctx.attr_i("output_height", 1)?,
        ctx.attr_i("output_width", 1)?,
    );
    if oh < 1 || ow < 1 {
        return Err(ctx.invalid("output_height and output_width must be >= 1"));
    }
    Ok(Box::new(RoiAlign {
        half_pixel,
        max_mode,
        out_h: oh as usize,
        out_w: ow as usize,
        sampling_ratio: ctx.attr_i("sampling_ratio", 0)?,
        spatial_scale: ctx.attr_f("spatial_scale", 1.0)?,
    }))
}

/// Bilinear sample positions and weights of one sampling point (all zero when outside).
fn bilinear(y: f64, x: f64, h: usize, w: usize) -> [(usize, f64); 4] {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return [(0, 0.0); 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ]
}

impl Op for RoiAlign {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "RoiAlign";
        let x = tensor_in(inputs, 0, OP)?;
        let rois = tensor_in(inputs, 1, OP)?;
        let bidx = tensor_in(inputs, 2, OP)?.to_i64_vec()?;
        if x.rank() != 4
            || rois.rank() != 2
            || rois.shape()[1] != 4
            || rois.shape()[0] != bidx.len()
        {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X {:?}, rois {:?} and batch_indices ({}) do not fit",
                x.shape(),
                rois.shape(),
                bidx.len()
            )));
        }
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let nr = bidx.len();
        let (ph_n, pw_n) = (self.out_h, self.out_w);
        let rv = rois.to_f64_vec()?;
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build::<T>(xw.dtype(), &[nr, c, ph_n, pw_n], |o| {
                for r in 0..nr {
                    let bi = bidx[r];
                    if bi < 0 || bi as usize >= n {
                        return Err(Error::Runtime(format!("{OP}: batch index {bi} is outside [0, {n})")));
                    }
                    let scale = self.spatial_scale as f64;
                    let off = if self.half_pixel { 0.5 } else { 0.0 };
                    let (sw, sh) = (rv[r * 4] * scale - off, rv[r * 4 + 1] * scale - off);
                    let (ew, eh) = (rv[r * 4 + 2] * scale - off, rv[r * 4 + 3] * scale - off);
                    let (mut rw, mut rh) = (ew - sw, eh - sh);
                    if !self.half_pixel {
                        rw = rw.max(1.0);
                        rh = rh.max(1.0);
                    }
                    let (bh, bw) = (rh / ph_n as f64, rw / pw_n as f64);
                    let gh = if self.sampling_ratio > 0 { self.sampling_ratio as usize } else { (rh / ph_n as f64).ceil().max(0.0) as usize };
                    let gw = if self.sampling_ratio > 0 { self.sampling_ratio as usize } else { (rw / pw_n as f64).ceil().max(0.0) as usize };
                    let count = (gh * gw).max(1) as f64;
                    // Precompute the sampling points of every bin.
                    let mut pts = Vec::with_capacity(ph_n * pw_n * gh * gw);
                    for ph in 0..ph_n {
                        for pw in 0..pw_n {
                            for iy in 0..gh {
                                let yy = sh + ph as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                                for ix in 0..gw {
                                    let xx = sw + pw as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                                    pts.push(bilinear(yy, xx, h, w));
                                }
                            }
                        }
                    }
                    for ch in 0..c {
                        let plane = &xv[(bi as usize * c + ch) * h * w..(bi as usize * c + ch + 1) * h * w];
                        for bin in 0..ph_n * pw_n {
                            let samples = &pts[bin * gh * gw..(bin + 1) * gh * gw];
                            let val = if self.max_mode {
                                let mut m: Option<f64> = None;
                                for s in samples {
                                    let v = s.iter().map(|(p, wt)| wt * plane[*p].to_f64()).fold(f64::NEG_INFINITY, f64::max);
                                    m = Some(m.map_or(v, |mm| mm.max(v)));
                                }
                                m.unwrap_or(0.0)
                            } else {
                                let mut acc = 0.0;
                                for s in samples {
                                    for (p, wt) in s {
                                        acc += wt * plane[*p].to_f64();
                                    }
                                }
                                acc / count
                            };
                            o[((r * c + ch) * ph_n * pw_n) + bin] = T::from_f64(val);
                        }
                    }
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

struct MaxRoiPool {
    pooled: [usize; 2],
    spatial_scale: f32,
}

fn build_max_roi_pool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let p = ctx
        .attr_ints("pooled_shape")?
        .ok_or_else(|| ctx.invalid("attribute 'pooled_shape' is required"))?;
    if p.len() != 2 || p.iter().any(|v| *v < 1) {
        return Err(ctx.invalid(format!(
            "pooled_shape must hold 2 positive values, got {p:?}"
        )));
    }
    Ok(Box::new(MaxRoiPool {
        pooled: [p[0] as usize, p[1] as usize],
        spatial_scale: ctx.attr_f("spatial_scale", 1.0)?,
    }))
}

impl Op for MaxRoiPool {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "MaxRoiPool";
        let x = tensor_in(inputs, 0, OP)?;
        let rois = tensor_in(inputs, 1, OP)?;
        if x.rank() != 4 || rois.rank() != 2 || rois.shape()[1] != 5 {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X {:?} must be 4-D and rois [num_rois, 5], got {:?}",
                x.shape(),
                rois.shape()
            )));
        }
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let nr = rois.shape()[0];
        let [ph_n, pw_n] = self.pooled;
        let rv = rois.to_f64_vec()?;
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build::<T>(xw.dtype(), &[nr, c, ph_n, pw_n], |o| {
                for r in 0..nr {
                    let roi = &rv[r * 5..r * 5 + 5];
                    let bi = roi[0] as i64;
                    if bi < 0 || bi as usize >= n {
                        return Err(Error::Runtime(format!("{OP}: batch index {bi} is outside [0, {n})")));
                    }
                    let s = self.spatial_scale as f64;
                    let (sw, sh) = ((roi[1] * s).round() as i64, (roi[2] * s).round() as i64);
                    let (ew, eh) = ((roi[3] * s).round() as i64, (roi[4] * s).round() as i64);
                    let (rh, rw) = ((eh - sh + 1).max(1) as f64, (ew - sw + 1).max(1) as f64);
                    let (bh, bw) = (rh / ph_n as f64, rw / pw_n as f64);
                    for ch in 0..c {
                        let plane = &xv[(bi as usize * c + ch) * h * w..(bi as usize * c + ch + 1) * h * w];
                        for ph in 0..ph_n {
                            let hs = ((ph as f64 * bh).floor() as i64 + sh).clamp(0, h as i64) as usize;
                            let he = (((ph + 1) as f64 * bh).ceil() as i64 + sh).clamp(0, h as i64) as usize;
                            for pw in 0..pw_n {
                                let ws = ((pw as f64 * bw).floor() as i64 + sw).clamp(0, w as i64) as usize;
                                let we = (((pw + 1) as f64 * bw).ceil() as i64 + sw).clamp(0, w as i64) as usize;
                                let mut m = if he <= hs || we <= ws { T::ZERO } else { T::NEG_INFINITY };
                                for yy in hs..he {
                                    for xx in ws..we {
                                        m = m.fmax(plane[yy * w + xx]);
                                    }
                                }
                                o[((r * c + ch) * ph_n + ph) * pw_n + pw] = m;
                            }
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
    fn roi_align_and_max_roi_pool() {
        let x = tf(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        // Whole image, output 1x1, sampling 2, half_pixel: samples at (0.0/1.0 grid) -> mean 2.5.
        let rois = tf(&[1, 4], &[0., 0., 2., 2.]);
        let bi = Tensor::from_slice(&[1], &[0i64]).unwrap();
        let y = &run_op(
            "RoiAlign",
            16,
            vec![("sampling_ratio", AttrValue::Int(2))],
            vec![Some(x.clone()), Some(rois), Some(bi)],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[2.5], 1e-6);
        let rois = tf(&[1, 5], &[0., 0., 0., 1., 1.]);
        let y = &run_op(
            "MaxRoiPool",
            1,
            vec![("pooled_shape", ints(&[1, 1]))],
            vec![Some(x), Some(rois)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[4.]);
    }
}
