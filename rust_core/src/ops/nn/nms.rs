//! NonMaxSuppression (opsets 10, 11): greedy per-class box selection, as exported by
//! torchvision's detection models and tf2onnx's object-detection graphs.
//!
//! For each image and class: the boxes scoring above `score_threshold` (all of them when it is
//! not given), highest score first (ties: lower box index first), each kept unless its
//! intersection over union with an already kept box of that class exceeds `iou_threshold`,
//! up to `max_output_boxes_per_class` (0 or absent: none). Boxes are `[y1, x1, y2, x2]` with the
//! corners in either order (`center_point_box = 0`) or `[x_center, y_center, width, height]`
//! (`center_point_box = 1`). A box of zero area suppresses nothing and is never suppressed.

use crate::error::{Error, Result};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.add("NonMaxSuppression", build);
}

struct NonMaxSuppression {
    center_point_box: bool,
}

fn build(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let center_point_box = match ctx.attr_i("center_point_box", 0)? {
        0 => false,
        1 => true,
        v => return Err(ctx.invalid(format!("center_point_box must be 0 or 1, got {v}"))),
    };
    Ok(Box::new(NonMaxSuppression { center_point_box }))
}

/// A box as `(x_min, y_min, x_max, y_max)`.
type Corners = [f64; 4];

fn corners(b: &[f64], center: bool) -> Corners {
    if center {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        [b[1].min(b[3]), b[0].min(b[2]), b[1].max(b[3]), b[0].max(b[2])]
    }
}

/// Whether `a` and `b` overlap by more than `threshold` (intersection over union).
fn suppresses(a: &Corners, b: &Corners, threshold: f64) -> bool {
    let (ix0, ix1) = (a[0].max(b[0]), a[2].min(b[2]));
    let (iy0, iy1) = (a[1].max(b[1]), a[3].min(b[3]));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

/// The first value of an optional scalar input (a tensor of one element, or empty: absent).
fn scalar(inputs: &[Option<&Value>], i: usize, what: &str) -> Result<Option<f64>> {
    let Some(t) = opt_tensor_in(inputs, i, "NonMaxSuppression")? else { return Ok(None) };
    let v = t.to_f64_vec().map_err(|e| e.context(&format!("NonMaxSuppression: {what}")))?;
    match v.len() {
        0 => Ok(None),
        1 => Ok(Some(v[0])),
        n => Err(Error::ShapeMismatch(format!("NonMaxSuppression: {what} must be a scalar, got {n} values (shape {:?})", t.shape()))),
    }
}

impl Op for NonMaxSuppression {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let boxes = tensor_in(inputs, 0, "NonMaxSuppression")?;
        let scores = tensor_in(inputs, 1, "NonMaxSuppression")?;
        let (bs, ss) = (boxes.shape(), scores.shape());
        if bs.len() != 3 || bs[2] != 4 {
            return Err(Error::ShapeMismatch(format!("NonMaxSuppression: boxes must be [batches, boxes, 4], got {bs:?}")));
        }
        if ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
            return Err(Error::ShapeMismatch(format!(
                "NonMaxSuppression: scores must be [batches, classes, boxes] = [{}, _, {}], got {ss:?}",
                bs[0], bs[1]
            )));
        }
        let max_per_class = scalar(inputs, 2, "max_output_boxes_per_class")?.unwrap_or(0.0).max(0.0) as usize;
        let iou_threshold = scalar(inputs, 3, "iou_threshold")?.unwrap_or(0.0);
        let score_threshold = scalar(inputs, 4, "score_threshold")?;
        let (batches, classes, n) = (bs[0], ss[1], bs[1]);
        let bv = boxes.to_f64_vec()?;
        let sv = scores.to_f64_vec()?;
        let mut selected: Vec<i64> = Vec::new();
        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut kept: Vec<(usize, Corners)> = Vec::new();
        for b in 0..batches {
            let bx: Vec<Corners> = (0..n).map(|i| corners(&bv[(b * n + i) * 4..(b * n + i + 1) * 4], self.center_point_box)).collect();
            for c in 0..classes {
                if max_per_class == 0 {
                    break;
                }
                let s = &sv[(b * classes + c) * n..(b * classes + c + 1) * n];
                order.clear();
                order.extend((0..n).filter(|&i| score_threshold.is_none_or(|t| s[i] > t)));
                // Highest score first; equal scores keep the lower index first (stable sort).
                order.sort_by(|&i, &j| s[j].partial_cmp(&s[i]).unwrap_or(std::cmp::Ordering::Equal));
                kept.clear();
                for &i in &order {
                    if kept.len() >= max_per_class {
                        break;
                    }
                    if kept.iter().all(|(_, k)| !suppresses(k, &bx[i], iou_threshold)) {
                        kept.push((i, bx[i]));
                    }
                }
                for (i, _) in &kept {
                    selected.extend([b as i64, c as i64, *i as i64]);
                }
            }
        }
        let rows = selected.len() / 3;
        Ok(vec![Tensor::from_vec(&[rows, 3], selected)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::pool::ThreadPool;

    fn run(inputs: &[Option<Tensor>]) -> Result<Tensor> {
        let vals: Vec<Option<Value>> = inputs.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let args: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
        let pool = ThreadPool::new(1);
        let mut out = NonMaxSuppression { center_point_box: false }.run(&args, &RunContext { pool: &pool })?;
        match out.swap_remove(0) {
            Value::Tensor(t) => Ok(t),
            _ => panic!("not a tensor"),
        }
    }

    #[test]
    fn selects_per_class_and_reports_bad_inputs() {
        // Three boxes: 0 and 1 overlap (IoU 0.81), 2 is apart; class 0 prefers 1, class 1 prefers 0.
        let boxes = Tensor::from_vec(&[1, 3, 4], vec![0f32, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 5.0, 1.0, 6.0]).unwrap();
        let scores = Tensor::from_vec(&[1, 2, 3], vec![0.5f32, 0.9, 0.3, 0.8, 0.7, 0.1]).unwrap();
        let sc = |v: f32| Some(Tensor::from_vec(&[1], vec![v]).unwrap());
        let max = Some(Tensor::from_vec(&[1], vec![5i64]).unwrap());
        let got = run(&[Some(boxes.clone()), Some(scores.clone()), max.clone(), sc(0.5), sc(0.2)]).unwrap();
        assert_eq!(got.shape(), &[3, 3]);
        assert_eq!(got.as_slice::<i64>().unwrap(), &[0, 0, 1, 0, 0, 2, 0, 1, 0]);
        // No max_output_boxes_per_class: nothing selected.
        let none = run(&[Some(boxes.clone()), Some(scores.clone())]).unwrap();
        assert_eq!(none.shape(), &[0, 3]);
        let bad_boxes = Tensor::from_vec(&[1, 4, 3], vec![0f32; 12]).unwrap();
        let e = run(&[Some(bad_boxes), Some(scores.clone())]).unwrap_err().to_string();
        assert!(e.contains("boxes must be [batches, boxes, 4]"), "{e}");
        let bad_scores = Tensor::from_vec(&[1, 2, 4], vec![0f32; 8]).unwrap();
        let e = run(&[Some(boxes.clone()), Some(bad_scores)]).unwrap_err().to_string();
        assert!(e.contains("scores must be [batches, classes, boxes]"), "{e}");
        let two = Some(Tensor::from_vec(&[2], vec![1i64, 2]).unwrap());
        let e = run(&[Some(boxes), Some(scores), two]).unwrap_err().to_string();
        assert!(e.contains("max_output_boxes_per_class must be a scalar"), "{e}");
    }

    #[test]
    fn flipped_corners_center_format_and_zero_area() {
        let a = corners(&[1.0, 0.0, 0.0, 1.0], false);
        assert_eq!(a, [0.0, 0.0, 1.0, 1.0]);
        let c = corners(&[0.5, 0.5, 1.0, 1.0], true);
        assert_eq!(c, [0.0, 0.0, 1.0, 1.0]);
        // Same box: IoU 1, suppressed at any threshold below 1.
        assert!(suppresses(&a, &c, 0.99));
        assert!(!suppresses(&a, &c, 1.0));
        // Half overlap: IoU 1/3.
        let h = corners(&[0.0, 0.5, 1.0, 1.5], false);
        assert!(suppresses(&a, &h, 0.33) && !suppresses(&a, &h, 0.34));
        // A zero-area box never suppresses nor is suppressed.
        let z = corners(&[0.5, 0.5, 0.5, 0.5], false);
        assert!(!suppresses(&a, &z, 0.0) && !suppresses(&z, &a, 0.0));
    }
}
