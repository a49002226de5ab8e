//! Channel concatenations whose producers write in place.
//!
//! A `Concat` along axis 1 of convolution outputs (Inception and SqueezeNet blocks, DenseNet,
//! U-Net skips) would copy every part once more after it was computed. When a part's producer
//! can write into a slice of a larger tensor ([`Op::writes_into`]) and nothing else reads its
//! output, the plan defers it to the concatenation's step: [`ConcatInPlace`] allocates the
//! result, each producer writes its channels of every image straight into it, and the other
//! parts are copied in. The producer's own output tensor never exists.
//!
//! Anything the in-place path does not cover at run time (a dtype other than `f32`, shapes that
//! do not line up, another axis after normalization) runs the producers and the original
//! `Concat` as written, so results and error messages are those of the plain graph.

use crate::error::{Error, Result};
use crate::ops::{Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

/// One input of the concatenation, in order.
pub enum Part {
    /// Computed here by `op` from the next `args` arguments of the step.
    Produced { op: Box<dyn Op>, args: usize, label: String },
    /// A value computed earlier: the next argument.
    Given,
}

/// The fused step: the concatenation and the producers it absorbed. Its arguments are each
/// part's arguments in part order (a produced part's inputs, or the given value).
pub struct ConcatInPlace {
    /// The original operator, for the general path.
    pub concat: Box<dyn Op>,
    /// Its `axis` attribute.
    pub axis: i64,
    pub parts: Vec<Part>,
}

impl ConcatInPlace {
    /// Arguments of each part.
    fn split<'a, 'v>(&self, inputs: &'a [Option<&'v Value>]) -> Result<Vec<&'a [Option<&'v Value>]>> {
        let mut at = 0;
        let mut spans = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let n = match p {
                Part::Produced { args, .. } => *args,
                Part::Given => 1,
            };
            let span = inputs.get(at..at + n).ok_or_else(|| Error::Internal(format!("concatenation step: {} arguments", inputs.len())))?;
            spans.push(span);
            at += n;
        }
        Ok(spans)
    }

    /// The concatenation written in place, or `None` when the parts do not allow it.
    fn in_place(&self, spans: &[&[Option<&Value>]], ctx: &RunContext) -> Result<Option<Tensor>> {
        let mut shapes = Vec::with_capacity(self.parts.len());
        for (p, args) in self.parts.iter().zip(spans) {
            let shape = match p {
                Part::Produced { op, .. } => op.output_shape_f32(args),
                Part::Given => match args[0] {
                    Some(Value::Tensor(t)) if t.dtype() == DType::Float32 => Some(t.shape().to_vec()),
                    _ => None,
                },
            };
            match shape {
                Some(s) => shapes.push(s),
                None => return Ok(None),
            }
        }
        let first = &shapes[0];
        let rank = first.len();
        let axis = if self.axis < 0 { self.axis + rank as i64 } else { self.axis };
        if rank < 2 || axis != 1 || shapes.iter().any(|s| s.len() != rank || s[0] != first[0] || s[2..] != first[2..]) {
            return Ok(None);
        }
        let inner: usize = first[2..].iter().product();
        let channels: usize = shapes.iter().map(|s| s[1]).sum();
        let mut out_shape = first.clone();
        out_shape[1] = channels;
        let images = first[0];
        let image = channels * inner;
        let t = Tensor::build_uninit::<f32>(DType::Float32, &out_shape, |out| {
            let mut c0 = 0;
            for ((p, args), shape) in self.parts.iter().zip(spans).zip(&shapes) {
                let len = shape[1] * inner;
                match p {
                    Part::Produced { op, label, .. } => {
                        if len > 0 && images > 0 {
                            op.run_into_f32(args, ctx, &mut out[c0 * inner..], image).map_err(|e| e.context(label))?;
                        }
                    }
                    Part::Given => {
                        let src = match args[0] {
                            Some(Value::Tensor(t)) => t.as_slice::<f32>()?,
                            _ => return Err(Error::Internal("concatenation part is not a tensor".into())),
                        };
                        for n in 0..images {
                            out[n * image + c0 * inner..n * image + c0 * inner + len].copy_from_slice(&src[n * len..(n + 1) * len]);
                        }
                    }
                }
                c0 += shape[1];
            }
            Ok(())
        })?;
        Ok(Some(t))
    }
}

impl Op for ConcatInPlace {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let spans = self.split(inputs)?;
        if let Some(t) = self.in_place(&spans, ctx)? {
            return Ok(vec![t.into()]);
        }
        // The plain graph: every producer, then the concatenation.
        let mut produced: Vec<Option<Value>> = Vec::with_capacity(self.parts.len());
        for (p, args) in self.parts.iter().zip(&spans) {
            produced.push(match p {
                Part::Produced { op, label, .. } => {
                    let mut outs = op.run(args, ctx).map_err(|e| e.context(label))?;
                    if outs.is_empty() {
                        return Err(Error::Internal(format!("{label} returned no output")));
                    }
                    Some(outs.swap_remove(0))
                }
                Part::Given => None,
            });
        }
        let args: Vec<Option<&Value>> = produced.iter().zip(&spans).map(|(v, args)| v.as_ref().or(args[0])).collect();
        self.concat.run(&args, ctx)
    }
}

#[cfg(test)]
mod tests {
    use crate::executor::plan::Plan;
    use crate::executor::pool::ThreadPool;
    use crate::graph::ir::{AttrValue, Graph, Node, TypeInfo, ValueInfo};
    use crate::ops::{RunContext, Value};
    use crate::tensor::Tensor;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, AttrValue)>) -> Node {
        Node {
            name: output.into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            doc_string: String::new(),
        }
    }

    fn vi(name: &str) -> ValueInfo {
        ValueInfo { name: name.into(), ty: TypeInfo::Unknown, doc_string: String::new() }
    }

    fn values(shape: &[usize], seed: usize) -> Vec<f64> {
        (0..shape.iter().product::<usize>()).map(|i| ((i * 7919 + seed * 31) % 97) as f64 / 48.0 - 1.0).collect()
    }

    fn tensor(shape: &[usize], seed: usize, f64s: bool) -> Tensor {
        let v = values(shape, seed);
        if f64s {
            Tensor::from_vec(shape, v).unwrap()
        } else {
            Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect::<Vec<f32>>()).unwrap()
        }
    }

    /// `Concat(conv3x3(x), relu(y), conv1x1(x), depthwise(x), conv_strided(z))` along `axis`;
    /// `expose` also makes the producers' outputs graph outputs (nothing fused).
    fn graph(axis: i64, expose: bool, f64s: bool, c_strided: usize) -> Graph {
        let ints = |v: &[i64]| AttrValue::Ints(v.to_vec());
        let nodes = vec![
            node("Conv", &["x", "w1", "b1"], "c1", vec![("kernel_shape", ints(&[3, 3])), ("pads", ints(&[1, 1, 1, 1]))]),
            node("Relu", &["y"], "r", vec![]),
            node("Conv", &["x", "w2"], "c2", vec![("kernel_shape", ints(&[1, 1]))]),
            node("Conv", &["x", "w3", "b3"], "c3", vec![("kernel_shape", ints(&[3, 3])), ("pads", ints(&[1, 1, 1, 1])), ("group", AttrValue::Int(3))]),
            node("Conv", &["z", "w4"], "c4", vec![("kernel_shape", ints(&[3, 3])), ("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))]),
            node("Concat", &["c1", "r", "c2", "c3", "c4"], "out", vec![("axis", AttrValue::Int(axis))]),
        ];
        let mut outputs = vec![vi("out")];
        if expose {
            outputs.extend(["c1", "c2", "c3", "c4"].map(vi));
        }
        Graph {
            name: "g".into(),
            doc_string: String::new(),
            nodes,
            inputs: ["x", "y", "z"].map(vi).to_vec(),
            outputs,
            initializers: vec![
                ("w1".into(), tensor(&[5, 3, 3, 3], 1, f64s)),
                ("b1".into(), tensor(&[5], 2, f64s)),
                ("w2".into(), tensor(&[6, 3, 1, 1], 3, f64s)),
                ("w3".into(), tensor(&[3, 1, 3, 3], 4, f64s)),
                ("b3".into(), tensor(&[3], 5, f64s)),
                ("w4".into(), tensor(&[c_strided, 2, 3, 3], 6, f64s)),
            ],
            value_info: Vec::new(),
        }
    }

    fn run(g: &Graph, feeds: &[Tensor], threads: usize) -> (Vec<String>, crate::Result<Tensor>) {
        let opsets = Arc::new(HashMap::from([(String::new(), 17i64)]));
        let plan = Plan::build(g, &opsets, &HashSet::new()).unwrap();
        let labels = plan.step_labels().map(String::from).collect();
        let pool = ThreadPool::new(threads);
        let inputs = feeds.iter().map(|t| Some(Value::Tensor(t.clone()))).collect();
        let out = plan.execute(inputs, &|_| None, &[], &RunContext { pool: &pool }).map(|mut v| match v.swap_remove(0) {
            Value::Tensor(t) => t,
            _ => panic!("not a tensor"),
        });
        (labels, out)
    }

    fn feeds(f64s: bool, zh: usize) -> Vec<Tensor> {
        vec![tensor(&[2, 3, 7, 9], 7, f64s), tensor(&[2, 4, 7, 9], 8, f64s), tensor(&[2, 2, zh, 17], 9, f64s)]
    }

    #[test]
    fn producers_of_a_channel_concat_write_in_place_with_the_plain_result() {
        for threads in [1, 2] {
            for axis in [1, -3] {
                let (labels, got) = run(&graph(axis, false, false, 2), &feeds(false, 13), threads);
                let (plain_labels, want) = run(&graph(axis, true, false, 2), &feeds(false, 13), threads);
                let fused: Vec<_> = labels.iter().filter(|l| l.contains("written in place by")).collect();
                assert_eq!(fused.len(), 1, "{labels:?}");
                assert!(fused[0].contains("'c1'") && fused[0].contains("'c4'") && !fused[0].contains("'r'"), "{fused:?}");
                // The four convolutions run inside the concatenation's step.
                assert_eq!(labels.len() + 4, plain_labels.len(), "{labels:?} vs {plain_labels:?}");
                let (got, want) = (got.unwrap(), want.unwrap());
                assert_eq!(got.shape(), &[2, 20, 7, 9]);
                assert_eq!(got.shape(), want.shape());
                for (i, (a, b)) in got.as_slice::<f32>().unwrap().iter().zip(want.as_slice::<f32>().unwrap()).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "t{threads} axis {axis} [{i}]: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn concats_the_in_place_path_does_not_cover_run_as_written() {
        // Along axis 2 (all parts 5 channels, different heights), and in f64: the producers
        // run, then Concat; same values as the plain graph.
        let g2 = |expose| {
            let mut g = graph(2, expose, false, 5);
            g.nodes[1] = node("Conv", &["y", "w5"], "r", vec![("kernel_shape", AttrValue::Ints(vec![1, 1]))]);
            g.nodes[2] = node("Conv", &["x", "w1", "b1"], "c2", vec![("pads", AttrValue::Ints(vec![0, 1, 0, 1]))]);
            g.nodes[3] = node("Conv", &["x", "w1"], "c3", vec![("pads", AttrValue::Ints(vec![2, 1, 2, 1]))]);
            g.initializers.push(("w5".into(), tensor(&[5, 4, 1, 1], 10, false)));
            g
        };
        for (g, plain, f) in [(g2(false), g2(true), feeds(false, 18)), (graph(1, false, true, 2), graph(1, true, true, 2), feeds(true, 13))] {
            let (labels, got) = run(&g, &f, 1);
            assert!(labels.iter().any(|l| l.contains("written in place by")), "{labels:?}");
            let (_, want) = run(&plain, &f, 1);
            let (got, want) = (got.unwrap(), want.unwrap());
            assert_eq!(got.shape(), want.shape());
            assert_eq!(got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
        }
    }

    #[test]
    fn mismatched_parts_report_the_concat_error() {
        // The strided convolution's output is 4x9 against 7x9: Concat's own error, naming it.
        let (_, got) = run(&graph(1, false, false, 2), &feeds(false, 8), 1);
        let e = got.unwrap_err().to_string();
        assert!(e.contains("Concat node 'out'") && e.contains("written in place by"), "{e}");
        let (_, plain) = run(&graph(1, true, false, 2), &feeds(false, 8), 1);
        let pe = plain.unwrap_err().to_string();
        // Same message from the operator itself.
        let tail = |s: &str| s.rsplit(": ").next().unwrap_or("").to_string();
        assert_eq!(tail(&e), tail(&pe), "{e} vs {pe}");
    }

    #[test]
    fn a_producer_read_elsewhere_is_not_absorbed() {
        let mut g = graph(1, false, false, 2);
        // c2 also feeds a Relu that is a graph output: c2 must exist as a tensor.
        g.nodes.push(node("Relu", &["c2"], "extra", vec![]));
        g.outputs.push(vi("extra"));
        let (labels, got) = run(&g, &feeds(false, 13), 2);
        let fused: Vec<_> = labels.iter().filter(|l| l.contains("written in place by")).collect();
        assert_eq!(fused.len(), 1);
        assert!(!fused[0].contains("'c2'") && fused[0].contains("'c1'"), "{fused:?}");
        let (_, want) = run(&graph(1, true, false, 2), &feeds(false, 13), 2);
        assert_eq!(got.unwrap().to_f64_vec().unwrap(), want.unwrap().to_f64_vec().unwrap());
    }
}
