//! Transformer blocks: Attention (opsets 23-25) and RotaryEmbedding (opset 23).

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::float::Float;
use crate::kernels::gemm::{gemm, GemmElem, MatRef};
use crate::ops::common::{broadcast_strides, strides_of};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};

pub fn register(r: &mut Registry) {
    r.add("Attention", build_attention);
    r.add("RotaryEmbedding", build_rotary);
}

struct Attention {
    scale: Option<f32>,
    causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    softcap: f32,
    qk_mode: i64,
    left_window: i64,
    right_window: i64,
}

fn build_attention(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let heads = |n: &str| -> Result<Option<usize>> {
        match ctx.attr_opt_i(n)? {
            None => Ok(None),
            Some(v) if v >= 1 => Ok(Some(v as usize)),
            Some(v) => Err(ctx.invalid(format!("attribute '{n}' must be >= 1, got {v}"))),
        }
    };
    Ok(Box::new(Attention {
        scale: ctx.attr_opt_f("scale")?,
        causal: ctx.attr_i("is_causal", 0)? != 0,
        q_heads: heads("q_num_heads")?,
        kv_heads: heads("kv_num_heads")?,
        softcap: ctx.attr_f("softcap", 0.0)?,
        qk_mode: ctx.attr_i("qk_matmul_output_mode", 0)?,
        left_window: ctx.attr_i("left_window_size", -1)?,
        right_window: ctx.attr_i("right_window_size", -1)?,
    }))
}

/// A `[B][H][S][D]` view of Q/K/V (3-D inputs `[B][S][H·D]` are reordered).
fn to_bhsd<T: Float>(t: &Tensor, heads: Option<usize>, what: &str) -> Result<(Vec<T>, [usize; 4])> {
    let v = t.as_slice::<T>()?;
    match t.rank() {
        4 => {
            let s = t.shape();
            Ok((v.to_vec(), [s[0], s[1], s[2], s[3]]))
        }
        3 => {
            let s = t.shape();
            let h = heads.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "Attention: 3-D {what} needs the num_heads attributes"
                ))
            })?;
            if s[2] % h != 0 {
                return Err(Error::ShapeMismatch(format!(
                    "Attention: {what} hidden size {} is not divisible by {h} heads",
                    s[2]
                )));
            }
            let (b, sq, d) = (s[0], s[1], s[2] / h);
            let mut o = vec![T::ZERO; v.len()];
            for bi in 0..b {
                for si in 0..sq {
                    for hi in 0..h {
                        let src = ((bi * sq + si) * h + hi) * d;
                        let dst = ((bi * h + hi) * sq + si) * d;
                        o[dst..dst + d].copy_from_slice(&v[src..src + d]);
                    }
                }
            }
            Ok((o, [b, h, sq, d]))
        }
        r => Err(Error::ShapeMismatch(format!(
            "Attention: {what} must be 3-D or 4-D, got rank {r}"
        ))),
    }
}

/// Concatenate `[B][H][S1][D]` and `[B][H][S2][D]` along S.
fn concat_seq<T: Float>(
    a: &[T],
    sa: [usize; 4],
    b: &[T],
    sb: [usize; 4],
) -> Result<(Vec<T>, [usize; 4])> {
    if sa[0] != sb[0] || sa[1] != sb[1] || sa[3] != sb[3] {
        return Err(Error::ShapeMismatch(format!(
            "Attention: past {sa:?} and current {sb:?} do not concatenate"
        )));
    }
    let (bh, d) = (sa[0] * sa[1], sa[3]);
    let mut o = Vec::with_capacity(a.len() + b.len());
    for i in 0..bh {
        o.extend_from_slice(&a[i * sa[2] * d..(i + 1) * sa[2] * d]);
        o.extend_from_slice(&b[i * sb[2] * d..(i + 1) * sb[2] * d]);
    }
    Ok((o, [sa[0], sa[1], sa[2] + sb[2], d]))
}

impl Attention {
    #[allow(clippy::too_many_arguments)]
    fn compute<T: GemmElem>(
        &self,
        q_t: &Tensor,
        k_t: &Tensor,
        v_t: &Tensor,
        mask: Option<&Tensor>,
        past_k: Option<&Tensor>,
        past_v: Option<&Tensor>,
        nonpad: Option<Vec<i64>>,
        half: Option<DType>,
    ) -> Result<Vec<Tensor>> {
        // Half-precision inputs: round intermediates where the reference (computing in that
        // type) rounds, so results agree to the last bit as often as possible.
        let rnd = |v: T| -> T {
            match half {
                Some(DType::Float16) => T::from_f32(half::f16::from_f32(v.to_f32()).to_f32()),
                Some(DType::BFloat16) => T::from_f32(half::bf16::from_f32(v.to_f32()).to_f32()),
                _ => v,
            }
        };
        let (q, qs) = to_bhsd::<T>(q_t, self.q_heads, "Q")?;
        let (mut k, mut ks) = to_bhsd::<T>(k_t, self.kv_heads, "K")?;
        let (mut v, mut vs) = to_bhsd::<T>(v_t, self.kv_heads, "V")?;
        let past_len = match past_k {
            Some(p) => p.shape().get(2).copied().unwrap_or(0),
            None => 0,
        };
        if let (Some(pk), Some(pv)) = (past_k, past_v) {
            let (pkv, pks) = to_bhsd::<T>(pk, None, "past_key")?;
            let (pvv, pvs) = to_bhsd::<T>(pv, None, "past_value")?;
            (k, ks) = concat_seq(&pkv, pks, &k, ks)?;
            (v, vs) = concat_seq(&pvv, pvs, &v, vs)?;
        } else if past_k.is_some() != past_v.is_some() {
            return Err(Error::InvalidArgument(
                "Attention: past_key and past_value must be given together".into(),
            ));
        }
        let [b, hq, sq, d] = qs;
        let [_, hkv, skv, dk] = ks;
        let dv = vs[3];
        if dk != d
            || ks[0] != b
            || vs[0] != b
            || vs[1] != hkv
            || vs[2] != skv
            || hkv == 0
            || hq % hkv != 0
        {
            return Err(Error::ShapeMismatch(format!(
                "Attention: Q {qs:?}, K {ks:?}, V {vs:?} do not fit together"
            )));
        }
        let scale = self
            .scale
            .map(|s| s as f64)
            .unwrap_or(1.0 / (d as f64).sqrt());
        let sqrt_scale = rnd(T::from_f64(scale.sqrt()));
        // Mask as additive bias with broadcast strides over [B][Hq][Sq][Skv] (padded with -inf).
        let neg_inf = T::NEG_INFINITY;
        let mask_data: Option<(Vec<T>, Vec<usize>, usize)> = match mask {
            None => None,
            Some(m) => {
                let vals: Vec<T> = if m.dtype() == DType::Bool {
                    m.as_slice::<u8>()?
                        .iter()
                        .map(|x| if *x != 0 { T::ZERO } else { neg_inf })
                        .collect()
                } else {
                    m.to_f64_vec()?.into_iter().map(T::from_f64).collect()
                };
                let mut ms = m.shape().to_vec();
                if ms.is_empty() || ms.len() > 4 {
                    return Err(Error::ShapeMismatch(format!(
                        "Attention: attn_mask must have rank 1..4, got {:?}",
                        m.shape()
                    )));
                }
                let last = *ms.last().unwrap_or(&0);
                if last > skv {
                    return Err(Error::ShapeMismatch(format!(
                        "Attention: attn_mask has {last} key positions, more than {skv}"
                    )));
                }
                let full = [b, hq, sq, skv];
                // Validate broadcast (ignoring the padded last axis).
                let off = 4 - ms.len();
                for (i, dm) in ms.iter().enumerate().take(ms.len() - 1) {
                    if *dm != 1 && *dm != full[off + i] {
                        return Err(Error::ShapeMismatch(format!(
                            "Attention: attn_mask {:?} does not broadcast to {full:?}",
                            m.shape()
                        )));
                    }
                }
                let st_real = strides_of(&ms);
                let n = ms.len();
                ms[n - 1] = skv;
                let mut st = broadcast_strides(&ms, &full);
                // Use the real strides of the unpadded mask.
                for i in 0..n {
                    if st[off + i] != 0 {
                        st[off + i] = st_real[i];
                    }
                }
                if last == 1 && skv != 1 {
                    st[3] = 0;
                }
                Some((vals, st, last))
            }
        };
        let rep = hq / hkv;
        let mut y = vec![T::ZERO; b * hq * sq * dv];
        let mut qk_out = vec![T::ZERO; b * hq * sq * skv];
        let mut scores = vec![T::ZERO; sq * skv];
        let mut bias = vec![T::ZERO; sq * skv];
        let qsc: Vec<T> = q.iter().map(|x| rnd(*x * sqrt_scale)).collect();
        let ksc: Vec<T> = k.iter().map(|x| rnd(*x * sqrt_scale)).collect();
        let softcap = T::from_f32(self.softcap);
        for bi in 0..b {
            // Causal / window frontier offset for this batch.
            let offset: i64 = match &nonpad {
                Some(np) if past_k.is_none() => np[bi] - sq as i64,
                _ => past_len as i64,
            };
            for h in 0..hq {
                let kvh = h / rep;
                // Bias.
                for i in 0..sq {
                    for j in 0..skv {
                        let mut bv = T::ZERO;
                        if let Some((vals, st, last)) = &mask_data {
                            bv = if j >= *last && *last != 1 {
                                neg_inf
                            } else {
                                vals[bi * st[0] + h * st[1] + i * st[2] + j * st[3]]
                            };
                        }
                        let pos = i as i64 + offset;
                        if self.causal && (j as i64) > pos {
                            bv = neg_inf;
                        }
                        let diff = pos - j as i64;
                        if self.left_window >= 0 && diff > self.left_window
                            || self.right_window >= 0 && -diff > self.right_window
                        {
                            bv = neg_inf;
                        }
                        if let Some(np) = &nonpad {
                            if (j as i64) >= np[bi] {
                                bv = neg_inf;
                            }
                        }
                        bias[i * skv + j] = bv;
                    }
                }
                let qm = &qsc[((bi * hq + h) * sq) * d..((bi * hq + h + 1) * sq) * d];
                let km = &ksc[((bi * hkv + kvh) * skv) * d..((bi * hkv + kvh + 1) * skv) * d];
                let vm = &v[((bi * hkv + kvh) * skv) * dv..((bi * hkv + kvh + 1) * skv) * dv];
                gemm(
                    sq,
                    skv,
                    d,
                    T::ONE,
                    MatRef::row_major(qm, d),
                    MatRef::row_major(km, d).t(),
                    T::ZERO,
                    &mut scores,
                    skv,
                    1,
                )?;
                scores.iter_mut().for_each(|s| *s = rnd(*s));
                if self.softcap > 0.0 {
                    scores
                        .iter_mut()
                        .for_each(|s| *s = rnd(softcap * rnd(rnd(*s / softcap).tanh())));
                }
                let qo = &mut qk_out[((bi * hq + h) * sq) * skv..((bi * hq + h + 1) * sq) * skv];
                if self.qk_mode <= 1 {
                    qo.copy_from_slice(&scores);
                }
                for (s, bv) in scores.iter_mut().zip(&bias) {
                    *s = rnd(*s + *bv);
                }
                if self.qk_mode == 2 {
                    qo.copy_from_slice(&scores);
                }
                for i in 0..sq {
                    let row = &mut scores[i * skv..(i + 1) * skv];
                    let all_masked = bias[i * skv..(i + 1) * skv].iter().all(|x| *x == neg_inf);
                    if all_masked {
                        row.iter_mut().for_each(|x| *x = T::ZERO);
                        continue;
                    }
                    let m = row.iter().fold(neg_inf, |a, x| a.fmax(*x));
                    let m = if m == neg_inf { T::ZERO } else { m };
                    let mut sum = T::ZERO;
                    for x in row.iter_mut() {
                        *x = rnd(rnd(*x - m).exp());
                        sum += *x;
                    }
                    let sum = rnd(sum);
                    let sum = if sum == T::ZERO { T::ONE } else { sum };
                    row.iter_mut().for_each(|x| *x = rnd(*x / sum));
                }
                if self.qk_mode == 3 {
                    qo.copy_from_slice(&scores);
                }
                let yo = &mut y[((bi * hq + h) * sq) * dv..((bi * hq + h + 1) * sq) * dv];
                gemm(
                    sq,
                    dv,
                    skv,
                    T::ONE,
                    MatRef::row_major(&scores, skv),
                    MatRef::row_major(vm, dv),
                    T::ZERO,
                    yo,
                    dv,
                    1,
                )?;
            }
        }
        let y_t = if q_t.rank() == 3 {
            let mut o = vec![T::ZERO; y.len()];
            for bi in 0..b {
                for h in 0..hq {
                    for i in 0..sq {
                        let src = ((bi * hq + h) * sq + i) * dv;
                        let dst = ((bi * sq + i) * hq + h) * dv;
                        o[dst..dst + dv].copy_from_slice(&y[src..src + dv]);
                    }
                }
            }
            Tensor::from_vec(&[b, sq, hq * dv], o)?
        } else {
            Tensor::from_vec(&[b, hq, sq, dv], y)?
        };
        Ok(vec![
            y_t,
            Tensor::from_vec(&ks, k)?,
            Tensor::from_vec(&vs, v)?,
            Tensor::from_vec(&[b, hq, sq, skv], qk_out)?,
        ])
    }
}

impl Op for Attention {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "Attention";
        let q = tensor_in(inputs, 0, OP)?;
        let k = tensor_in(inputs, 1, OP)?;
        let v = tensor_in(inputs, 2, OP)?;
        let mask = opt_tensor_in(inputs, 3, OP)?;
        let pk = opt_tensor_in(inputs, 4, OP)?;
        let pv = opt_tensor_in(inputs, 5, OP)?;
        let nonpad = opt_tensor_in(inputs, 6, OP)?
            .map(|t| t.to_i64_vec())
            .transpose()?;
        let dt = q.dtype();
        let (qw, kw, vw) = (widen(q)?, widen(k)?, widen(v)?);
        let mw = match mask {
            Some(m) if m.dtype() != DType::Bool => Some(widen(m)?),
            Some(m) => Some(std::borrow::Cow::Borrowed(m)),
            None => None,
        };
        let pkw = pk.map(widen).transpose()?;
        let pvw = pv.map(widen).transpose()?;
        let outs = crate::with_float!(qw.dtype(), OP, T => self.compute::<T>(&qw, &kw, &vw, mw.as_deref(), pkw.as_deref(), pvw.as_deref(), nonpad, (dt != qw.dtype()).then_some(dt)))?;
        outs.into_iter()
            .map(|t| narrow(t, dt).map(Value::Tensor))
            .collect()
    }
}

struct Rotary {
    interleaved: bool,
    rotary_dim: usize,
    num_heads: usize,
}

fn build_rotary(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Rotary {
        interleaved: ctx.attr_i("interleaved", 0)? != 0,
        rotary_dim: ctx.attr_i("rotary_embedding_dim", 0)?.max(0) as usize,
        num_heads: ctx.attr_i("num_heads", 0)?.max(0) as usize,
    }))
}

impl Op for Rotary {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "RotaryEmbedding";
        let x = tensor_in(inputs, 0, OP)?;
        let cos = tensor_in(inputs, 1, OP)?;
        let sin = tensor_in(inputs, 2, OP)?;
        let pos = opt_tensor_in(inputs, 3, OP)?
            .map(|t| t.to_i64_vec())
            .transpose()?;
        let s = x.shape();
        // Index of element (b, seq, h, d) in x.
        let (b, sl, h, hd, four) = match x.rank() {
            4 => (s[0], s[2], s[1], s[3], true),
            3 => {
                if self.num_heads == 0 || s[2] % self.num_heads != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "{OP}: 3-D input needs num_heads dividing {}",
                        s[2]
                    )));
                }
                (s[0], s[1], self.num_heads, s[2] / self.num_heads, false)
            }
            r => {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: input must be 3-D or 4-D, got rank {r}"
                )))
            }
        };
        let rd = if self.rotary_dim == 0 {
            hd
        } else {
            self.rotary_dim
        };
        let half = rd / 2;
        if rd > hd || rd % 2 != 0 || cos.shape().last() != Some(&half) || sin.shape() != cos.shape()
        {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: caches {:?} do not match rotary dim {rd}",
                cos.shape()
            )));
        }
        let dt = x.dtype();
        let (xw, cw, sw) = (widen(x)?, widen(cos)?, widen(sin)?);
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            let (cv, sv) = (cw.as_slice::<T>()?, sw.as_slice::<T>()?);
            let max_pos = cos.shape()[0];
            Tensor::build_uninit::<T>(xw.dtype(), s, |o| {
                o.copy_from_slice(xv);
                for bi in 0..b {
                    for si in 0..sl {
                        let row = match &pos {
                            Some(p) => {
                                let pid = p.get(bi * sl + si).copied().unwrap_or(-1);
                                if pid < 0 || pid as usize >= max_pos {
                                    return Err(Error::Runtime(format!("{OP}: position id {pid} is outside the cache of {max_pos}")));
                                }
                                pid as usize
                            }
                            None => bi * sl + si,
                        };
                        if (row + 1) * half > cv.len() {
                            return Err(Error::ShapeMismatch(format!("{OP}: cos_cache {:?} is too small", cos.shape())));
                        }
                        let (c, sn) = (&cv[row * half..(row + 1) * half], &sv[row * half..(row + 1) * half]);
                        for hi in 0..h {
                            let base = if four { ((bi * h + hi) * sl + si) * hd } else { ((bi * sl + si) * h + hi) * hd };
                            for i in 0..half {
                                let (i1, i2) = if self.interleaved { (base + 2 * i, base + 2 * i + 1) } else { (base + i, base + half + i) };
                                let (x1, x2) = (xv[i1], xv[i2]);
                                o[i1] = c[i] * x1 - sn[i] * x2;
                                o[i2] = sn[i] * x1 + c[i] * x2;
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

    #[test]
    fn attention_causal_single_head() {
        // Q = K = [[1,0],[0,1]], V = [[1,2],[3,4]], scale 1, causal.
        let q = tf(&[1, 1, 2, 2], &[1., 0., 0., 1.]);
        let v = tf(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let out = run_op(
            "Attention",
            23,
            vec![
                ("is_causal", AttrValue::Int(1)),
                ("scale", AttrValue::Float(1.0)),
            ],
            vec![Some(q.clone()), Some(q.clone()), Some(v.clone())],
            1,
        )
        .unwrap();
        // Row 0 sees only key 0 -> [1,2]; row 1: scores [0,1] -> softmax weights.
        let e = 1f32.exp();
        let (w0, w1) = (1. / (1. + e), e / (1. + e));
        assert_close(
            out[0].as_slice::<f32>().unwrap(),
            &[1., 2., w0 * 1. + w1 * 3., w0 * 2. + w1 * 4.],
            1e-6,
        );
    }

    #[test]
    fn rotary_halves() {
        // One head of size 2, position 0: cos 0, sin 1 -> (x1, x2) -> (-x2, x1).
        let x = tf(&[1, 1, 1, 2], &[1., 2.]);
        let c = tf(&[1, 1], &[0.]);
        let s = tf(&[1, 1], &[1.]);
        let pos = crate::tensor::Tensor::from_slice(&[1, 1], &[0i64]).unwrap();
        let y = &run_op(
            "RotaryEmbedding",
            23,
            vec![],
            vec![Some(x), Some(c), Some(s), Some(pos)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-2., 1.]);
    }
}
