//! Scan: iterates a body over slices of the scan inputs, threading state values and stacking
//! per-iteration scan outputs. Opset 9+ (scan_input_axes / scan_output_axes / directions) and
//! opset 8 (a leading batch axis and an optional sequence_lens input).

use super::loop_op::stack;
use super::Body;
use crate::error::{Error, Result};
use crate::ops::array::concat::axis_in;
use crate::ops::array::gather::take;
use crate::ops::array::transpose::transpose;
use crate::ops::{BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

struct Scan {
    body: Body,
    n_scan_in: usize,
    in_axes: Vec<i64>,
    in_dirs: Vec<i64>,
    out_axes: Vec<i64>,
    out_dirs: Vec<i64>,
    /// Opset 8: batch axis 0 and a leading optional sequence_lens input.
    batched: bool,
    /// Explicit inputs of the node (captured values follow them).
    n_explicit: usize,
}

impl Scan {
    /// One scan over `states` and `scans` (scan axes per `in_axes`).
    fn scan_once(
        &self,
        states: Vec<Value>,
        scans: &[Tensor],
        captured: &[Option<&Value>],
        ctx: &RunContext,
    ) -> Result<Vec<Value>> {
        let n_state = states.len();
        let axes = scans
            .iter()
            .enumerate()
            .map(|(j, x)| {
                axis_in(
                    self.in_axes.get(j).copied().unwrap_or(0),
                    x.rank(),
                    "Scan: scan_input_axes",
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let len = match scans.first() {
            Some(x) => x.shape()[axes[0]],
            None => 0,
        };
        for (j, x) in scans.iter().enumerate() {
            if x.shape()[axes[j]] != len {
                return Err(Error::ShapeMismatch(format!(
                    "Scan: scan input {j} has {} steps along axis {}, scan input 0 has {len}",
                    x.shape()[axes[j]],
                    axes[j]
                )));
            }
        }
        let n_out = self.body.outputs.len().saturating_sub(n_state);
        let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); n_out];
        let mut states = states;
        for t in 0..len {
            let mut args = std::mem::take(&mut states);
            for (j, x) in scans.iter().enumerate() {
                let i = if self.in_dirs.get(j).copied().unwrap_or(0) == 1 {
                    len - 1 - t
                } else {
                    t
                };
                args.push(Value::Tensor(take(
                    x,
                    axes[j],
                    &[i],
                    &[],
                    Some(ctx.pool),
                    "Scan",
                )?));
            }
            let mut res = self.body.run(args, captured, ctx)?;
            if res.len() != n_state + n_out {
                return Err(Error::InvalidModel(format!(
                    "Scan: the body returned {} values, expected {}",
                    res.len(),
                    n_state + n_out
                )));
            }
            let scan_vals = res.split_off(n_state);
            states = res;
            for (k, v) in scan_vals.into_iter().enumerate() {
                outs[k].push(
                    v.into_tensor()
                        .map_err(|e| e.context("Scan: scan output"))?,
                );
            }
        }
        let mut result = states;
        for (k, mut items) in outs.into_iter().enumerate() {
            if self.out_dirs.get(k).copied().unwrap_or(0) == 1 {
                items.reverse();
            }
            let stacked = stack(&items, self.body.outputs.get(n_state + k), "Scan")?;
            let a = axis_in(
                self.out_axes.get(k).copied().unwrap_or(0),
                stacked.rank(),
                "Scan: scan_output_axes",
            )?;
            let y = if a == 0 {
                stacked
            } else {
                // Move the new axis 0 to position a.
                let mut perm: Vec<usize> = (1..stacked.rank()).collect();
                perm.insert(a, 0);
                transpose(&stacked, &perm, Some(ctx.pool))?
            };
            result.push(Value::Tensor(y));
        }
        Ok(result)
    }
}

impl Op for Scan {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let captured = self.body.captured(inputs)?;
        let first = if self.batched { 1 } else { 0 };
        let explicit = inputs.get(first..self.n_explicit).unwrap_or(&[]);
        let n_state = explicit.len().checked_sub(self.n_scan_in).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Scan: {} inputs given for {} scan inputs",
                explicit.len(),
                self.n_scan_in
            ))
        })?;
        let vals: Vec<&Value> = explicit
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    Error::InvalidArgument(format!("Scan: input {} is missing", i + first))
                })
            })
            .collect::<Result<_>>()?;
        let scans: Vec<Tensor> = vals[n_state..]
            .iter()
            .map(|v| v.as_tensor().cloned())
            .collect::<Result<_>>()?;
        if !self.batched {
            let states = vals[..n_state].iter().map(|v| (*v).clone()).collect();
            return self.scan_once(states, &scans, &captured, ctx);
        }
        // Opset 8: run each batch entry on its own, then stack the results along axis 0.
        let states: Vec<Tensor> = vals[..n_state]
            .iter()
            .map(|v| v.as_tensor().cloned())
            .collect::<Result<_>>()?;
        let batch = scans
            .first()
            .or(states.first())
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .unwrap_or(0);
        if let Some(Some(lens)) = inputs
            .first()
            .map(|v| v.map(|v| v.as_tensor()).transpose())
            .transpose()?
        {
            let steps = scans
                .first()
                .and_then(|s| s.shape().get(1).copied())
                .unwrap_or(0) as i64;
            if lens.to_i64_vec()?.iter().any(|&l| l != steps) {
                return Err(Error::InvalidArgument(format!(
                    "Scan: sequence_lens other than the full length ({steps}) are not supported"
                )));
            }
        }
        let mut per_batch: Vec<Vec<Value>> = Vec::with_capacity(batch);
        for b in 0..batch {
            let st = states
                .iter()
                .map(|s| take(s, 0, &[b], &[], None, "Scan").map(Value::Tensor))
                .collect::<Result<Vec<_>>>()?;
            let sc = scans
                .iter()
                .map(|s| take(s, 0, &[b], &[], None, "Scan"))
                .collect::<Result<Vec<_>>>()?;
            per_batch.push(self.scan_once(st, &sc, &captured, ctx)?);
        }
        let n_out = self.body.outputs.len();
        (0..n_out)
            .map(|k| {
                let items = per_batch
                    .iter()
                    .map(|r| r[k].as_tensor().cloned())
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Tensor(stack(&items, None, "Scan")?))
            })
            .collect()
    }
}

pub fn build_scan(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let body = Body::build(ctx, "body")?;
    let n_scan_in = ctx
        .attr_opt_i("num_scan_inputs")?
        .ok_or_else(|| ctx.invalid("attribute 'num_scan_inputs' is required"))?;
    if n_scan_in < 0 {
        return Err(ctx.invalid(format!("num_scan_inputs must be >= 0, got {n_scan_in}")));
    }
    let batched = ctx.opset < 9;
    let ints = |name: &str| -> Result<Vec<i64>> { Ok(ctx.attr_ints(name)?.unwrap_or_default()) };
    let (in_axes, in_dirs) = if batched {
        (Vec::new(), ints("directions")?)
    } else {
        (ints("scan_input_axes")?, ints("scan_input_directions")?)
    };
    Ok(Box::new(Scan {
        body,
        n_scan_in: n_scan_in as usize,
        in_axes,
        in_dirs,
        out_axes: ints("scan_output_axes")?,
        out_dirs: ints("scan_output_directions")?,
        batched,
        n_explicit: ctx.n_inputs(),
    }))
}
