//! Col2Im (opset 18): rearrange column blocks `[N, C·∏block, L]` into an image, summing overlaps.

use super::float_io::{narrow, widen};
use super::window::{AutoPad, WindowAttrs};
use crate::error::{Error, Result};
use crate::kernels::conv::col2im_rows;
use crate::ops::{tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.add("Col2Im", build_col2im);
}

struct Col2Im {
    attrs: WindowAttrs,
}

fn build_col2im(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let mut attrs = WindowAttrs::parse(ctx)?;
    attrs.auto_pad = AutoPad::NotSet;
    attrs.ceil_mode = false;
    Ok(Box::new(Col2Im { attrs }))
}

impl Op for Col2Im {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "Col2Im";
        let x = tensor_in(inputs, 0, OP)?;
        let image: Vec<usize> = tensor_in(inputs, 1, OP)?
            .to_i64_vec()?
            .into_iter()
            .map(|v| v.max(0) as usize)
            .collect();
        let block: Vec<usize> = tensor_in(inputs, 2, OP)?
            .to_i64_vec()?
            .into_iter()
            .map(|v| v.max(1) as usize)
            .collect();
        if x.rank() != 3 || image.len() != block.len() {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: input must be [N, C*K, L] and image_shape/block_shape of equal length"
            )));
        }
        let ksz: usize = block.iter().product();
        let (n, ck, l) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        if ck % ksz != 0 {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: {ck} rows are not a multiple of the block size {ksz}"
            )));
        }
        let c = ck / ksz;
        let win = self.attrs.resolve(&image, &block, OP)?;
        if win.out.iter().product::<usize>() != l {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: {l} columns given, the geometry has {:?} blocks",
                win.out
            )));
        }
        let w3 = win.as_3d()?;
        let in_sz: usize = image.iter().product();
        let mut out_shape = vec![n, c];
        out_shape.extend(&image);
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build::<T>(xw.dtype(), &out_shape, |o| {
                for b in 0..n {
                    col2im_rows(&w3, &xv[b * ck * l..(b + 1) * ck * l], 0..ck, &mut o[b * c * in_sz..(b + 1) * c * in_sz]);
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
    use crate::tensor::Tensor;

    #[test]
    fn col2im_overlap() {
        // 1 channel, image 1x3, block 1x2, stride 1: two columns overlapping in the middle.
        let x = tf(&[1, 2, 2], &[1., 2., 10., 20.]);
        let img = Tensor::from_slice(&[2], &[1i64, 3]).unwrap();
        let blk = Tensor::from_slice(&[2], &[1i64, 2]).unwrap();
        let y = &run_op("Col2Im", 18, vec![], vec![Some(x), Some(img), Some(blk)], 1).unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 1, 3]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 12., 20.]);
    }
}
