//! Signal processing: the discrete Fourier transform (DFT, opsets 17 and 20), the short-time
//! Fourier transform (STFT, opset 17), MelWeightMatrix (opset 17) and the window functions HannWindow, HammingWindow, BlackmanWindow (opset 17), as exported with
//! `torch.stft` / `torch.fft` pipelines.
//!
//! DFT computes in `f64`: a radix-2 FFT for power-of-two lengths, the direct sum over a table of
//! twiddle factors otherwise (O(n²) per signal).
//!
//! Windows: `size` values `w[n] = Σ_k a_k·cos(2πkn / N')`, `N' = size` when `periodic` (the default, for
//! spectral analysis) and `size - 1` otherwise (symmetric, for filter design), computed in
//! `f64` and cast to `output_datatype` (default float).

use crate::error::{Error, Result};
use crate::ops::math::cast::{cast, CastOptions};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

/// Cosine-sum coefficients of each window.
const HANN: [f64; 3] = [0.5, -0.5, 0.0];
/// ONNX's Hamming: α = 25/46, β = 1 - α (torch's 0.54 / 0.46 rounded).
const HAMMING: [f64; 3] = [25.0 / 46.0, -(21.0 / 46.0), 0.0];
const BLACKMAN: [f64; 3] = [0.42, -0.5, 0.08];

struct CosineWindow {
    name: &'static str,
    coeffs: [f64; 3],
    periodic: bool,
    dtype: DType,
}

/// The `output_datatype` attribute (default float).
fn output_dtype(ctx: &BuildContext) -> Result<DType> {
    let code = ctx.attr_i("output_datatype", 1)?;
    let dtype = i32::try_from(code).ok().and_then(|c| DType::from_code(c).ok()).ok_or_else(|| ctx.invalid(format!("output_datatype {code} is not a tensor element type")))?;
    if matches!(dtype, DType::String) {
        return Err(ctx.invalid("output_datatype cannot be string"));
    }
    Ok(dtype)
}

/// An optional integer scalar input `i` of `op` (absent or empty: `None`).
fn opt_scalar_i64(inputs: &[Option<&Value>], i: usize, op: &str, what: &str) -> Result<Option<i64>> {
    match opt_tensor_in(inputs, i, op)? {
        None => Ok(None),
        Some(t) => match t.to_i64_vec()?.as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(*v)),
            _ => Err(Error::ShapeMismatch(format!("{op}: {what} must be a scalar, got shape {:?}", t.shape()))),
        },
    }
}

fn build(ctx: &BuildContext, name: &'static str, coeffs: [f64; 3]) -> Result<Box<dyn Op>> {
    let dtype = output_dtype(ctx)?;
    let periodic = ctx.attr_i("periodic", 1)? != 0;
    Ok(Box::new(CosineWindow { name, coeffs, periodic, dtype }))
}

pub fn build_hann(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, "HannWindow", HANN)
}

pub fn build_hamming(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, "HammingWindow", HAMMING)
}

pub fn build_blackman(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, "BlackmanWindow", BLACKMAN)
}

/// Longest window generated (a corrupt `size` must not allocate the machine away).
const MAX_WINDOW: i64 = 1 << 28;

impl Op for CosineWindow {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let size = tensor_in(inputs, 0, self.name)?;
        let v = size.to_i64_vec()?;
        let n = match v.as_slice() {
            [n] if (0..=MAX_WINDOW).contains(n) => *n as usize,
            [n] => return Err(Error::InvalidArgument(format!("{}: size {n} is out of range 0..={MAX_WINDOW}", self.name))),
            _ => return Err(Error::ShapeMismatch(format!("{}: size must be a scalar, got shape {:?}", self.name, size.shape()))),
        };
        let denom = if self.periodic { n as f64 } else { n as f64 - 1.0 };
        let w: Vec<f64> = (0..n)
            .map(|i| {
                let t = 2.0 * std::f64::consts::PI * i as f64 / denom;
                self.coeffs[0] + self.coeffs[1] * t.cos() + self.coeffs[2] * (2.0 * t).cos()
            })
            .collect();
        let t = Tensor::from_vec(&[n], w)?;
        Ok(vec![cast(&t, self.dtype, CastOptions::default())?.into()])
    }
}

/// `DFT`: forward or inverse transform along one axis of `[..., signal..., 1 | 2]` (real or
/// complex), optionally one-sided (a real signal's first `n/2 + 1` frequencies forward, or an
/// inverse from them back to the real signal).
struct Dft {
    /// Opset 17-19 `axis` attribute; opset 20 takes it as input 2 (default -2).
    axis_attr: Option<i64>,
    inverse: bool,
    onesided: bool,
}

pub fn build_dft(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let axis_attr = if ctx.opset >= 20 { None } else { Some(ctx.attr_i("axis", 1)?) };
    Ok(Box::new(Dft { axis_attr, inverse: ctx.attr_i("inverse", 0)? != 0, onesided: ctx.attr_i("onesided", 0)? != 0 }))
}

/// Longest transform (corrupt `dft_length` values must not allocate the machine away).
const MAX_DFT: i64 = 1 << 26;

/// In-place complex transform of `re`/`im` (length n): `X[k] = Σ_j x[j]·e^(∓2πi·jk/n)`, the
/// minus sign forward. Unnormalized.
fn transform(re: &mut [f64], im: &mut [f64], inverse: bool, tw: &[(f64, f64)], tmp: &mut Vec<(f64, f64)>) {
    let n = re.len();
    if n <= 1 {
        return;
    }
    let sign = if inverse { -1.0 } else { 1.0 };
    if n.is_power_of_two() {
        // Iterative radix-2: bit-reversal permutation, then butterflies of growing span.
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let (wr, wi) = tw[k * step];
                    let wi = wi * sign;
                    let (a, b) = (start + k, start + k + len / 2);
                    let (xr, xi) = (re[b] * wr - im[b] * wi, re[b] * wi + im[b] * wr);
                    re[b] = re[a] - xr;
                    im[b] = im[a] - xi;
                    re[a] += xr;
                    im[a] += xi;
                }
            }
            len *= 2;
        }
        return;
    }
    tmp.clear();
    for k in 0..n {
        let (mut sr, mut si) = (0.0, 0.0);
        for j in 0..n {
            let (wr, wi) = tw[(j * k) % n];
            let wi = wi * sign;
            sr += re[j] * wr - im[j] * wi;
            si += re[j] * wi + im[j] * wr;
        }
        tmp.push((sr, si));
    }
    for (k, (r, i)) in tmp.iter().enumerate() {
        re[k] = *r;
        im[k] = *i;
    }
}

impl Op for Dft {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "DFT")?;
        let shape = x.shape().to_vec();
        let rank = shape.len();
        let dt = x.dtype();
        if !matches!(dt, DType::Float32 | DType::Float64 | DType::Float16 | DType::BFloat16) {
            return Err(Error::UnsupportedDtype(format!("DFT: input must be a float tensor, got {dt}")));
        }
        if rank < 2 || !(1..=2).contains(&shape[rank - 1]) {
            return Err(Error::ShapeMismatch(format!("DFT: input must be [..., signal, 1 or 2] (real or complex), got {shape:?}")));
        }
        let scalar_i = |i: usize, what: &str| opt_scalar_i64(inputs, i, "DFT", what);
        let axis = match self.axis_attr {
            Some(a) => a,
            None => scalar_i(2, "axis")?.unwrap_or(-2),
        };
        let a = axis.rem_euclid(rank as i64) as usize;
        if a == rank - 1 || axis < -(rank as i64) || axis >= rank as i64 {
            return Err(Error::InvalidArgument(format!("DFT: axis {axis} is not a signal axis of a rank-{rank} input (the last axis holds real/imaginary parts)")));
        }
        let len = shape[a];
        let n = match scalar_i(1, "dft_length")? {
            Some(v) if (1..=MAX_DFT).contains(&v) => v as usize,
            Some(v) => return Err(Error::InvalidArgument(format!("DFT: dft_length {v} is out of range 1..={MAX_DFT}"))),
            None if self.inverse && self.onesided => 2 * len.saturating_sub(1),
            None => len,
        };
        if n == 0 {
            return Err(Error::InvalidArgument(format!("DFT: the transform length is 0 (signal axis of {len})")));
        }
        let complex_in = shape[rank - 1] == 2;
        let (out_len, complex_out) = match (self.inverse, self.onesided) {
            (false, true) => (n / 2 + 1, true),
            (true, true) => (n, false),
            _ => (n, true),
        };
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..rank - 1].iter().product();
        let mut out_shape = shape.clone();
        out_shape[a] = out_len;
        out_shape[rank - 1] = if complex_out { 2 } else { 1 };
        let xv = x.to_f64_vec()?;
        let c_in = shape[rank - 1];
        let c_out = out_shape[rank - 1];
        let mut y = vec![0f64; outer * out_len * inner * c_out];
        let tw: Vec<(f64, f64)> = (0..n)
            .map(|m| {
                let t = -2.0 * std::f64::consts::PI * m as f64 / n as f64;
                (t.cos(), t.sin())
            })
            .collect();
        let (mut re, mut im, mut tmp) = (vec![0f64; n], vec![0f64; n], Vec::new());
        for o in 0..outer {
            for i in 0..inner {
                re.fill(0.0);
                im.fill(0.0);
                let at = |j: usize| ((o * len + j) * inner + i) * c_in;
                if self.inverse && self.onesided {
                    // Hermitian spectrum from its first n/2 + 1 values (the imaginary parts of
                    // the DC and, for even n, Nyquist terms are ignored, as numpy's irfft does).
                    let half = n / 2;
                    for k in 0..=half.min(len.saturating_sub(1)) {
                        let (r, im_k) = (xv[at(k)], if complex_in { xv[at(k) + 1] } else { 0.0 });
                        let im_k = if k == 0 || (n % 2 == 0 && k == half) { 0.0 } else { im_k };
                        re[k] = r;
                        im[k] = im_k;
                        if k != 0 && n - k != k {
                            re[n - k] = r;
                            im[n - k] = -im_k;
                        }
                    }
                } else {
                    for j in 0..len.min(n) {
                        re[j] = xv[at(j)];
                        im[j] = if complex_in { xv[at(j) + 1] } else { 0.0 };
                    }
                }
                transform(&mut re, &mut im, self.inverse, &tw, &mut tmp);
                let scale = if self.inverse { 1.0 / n as f64 } else { 1.0 };
                for k in 0..out_len {
                    let dst = ((o * out_len + k) * inner + i) * c_out;
                    y[dst] = re[k] * scale;
                    if complex_out {
                        y[dst + 1] = im[k] * scale;
                    }
                }
            }
        }
        let t = Tensor::from_vec(&out_shape, y)?;
        Ok(vec![cast(&t, dt, CastOptions::default())?.into()])
    }
}

/// `STFT`: frames of `frame_length` samples every `frame_step`, each multiplied by `window`
/// (when given) and transformed: `[batch, frames, bins, 2]`, `bins = frame_length / 2 + 1`
/// when `onesided` (the default), else `frame_length`.
struct Stft {
    onesided: bool,
}

pub fn build_stft(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Stft { onesided: ctx.attr_i("onesided", 1)? != 0 }))
}

impl Op for Stft {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "STFT")?;
        let shape = x.shape();
        let dt = x.dtype();
        if !matches!(dt, DType::Float32 | DType::Float64 | DType::Float16 | DType::BFloat16) {
            return Err(Error::UnsupportedDtype(format!("STFT: signal must be a float tensor, got {dt}")));
        }
        if shape.len() != 3 || !(1..=2).contains(&shape[2]) {
            return Err(Error::ShapeMismatch(format!("STFT: signal must be [batch, length, 1 or 2], got {shape:?}")));
        }
        let scalar_i = |i: usize, what: &str| opt_scalar_i64(inputs, i, "STFT", what);
        let step = match scalar_i(1, "frame_step")? {
            Some(v) if v >= 1 => v as usize,
            Some(v) => return Err(Error::InvalidArgument(format!("STFT: frame_step must be positive, got {v}"))),
            None => return Err(Error::InvalidArgument("STFT: frame_step is required".into())),
        };
        let window = match opt_tensor_in(inputs, 2, "STFT")? {
            Some(w) if w.rank() == 1 => Some(w.to_f64_vec()?),
            Some(w) => return Err(Error::ShapeMismatch(format!("STFT: window must be 1-D, got shape {:?}", w.shape()))),
            None => None,
        };
        let flen = match (scalar_i(3, "frame_length")?, &window) {
            (Some(f), Some(w)) if f != w.len() as i64 => {
                return Err(Error::ShapeMismatch(format!("STFT: frame_length {f} differs from the window's {} values", w.len())))
            }
            (Some(f), _) if (1..=MAX_DFT).contains(&f) => f as usize,
            (Some(f), _) => return Err(Error::InvalidArgument(format!("STFT: frame_length {f} is out of range 1..={MAX_DFT}"))),
            (None, Some(w)) if !w.is_empty() => w.len(),
            _ => return Err(Error::InvalidArgument("STFT: needs a frame_length or a non-empty window".into())),
        };
        let (batch, len, c_in) = (shape[0], shape[1], shape[2]);
        if len < flen {
            return Err(Error::ShapeMismatch(format!("STFT: signal of {len} samples is shorter than a frame of {flen}")));
        }
        let frames = 1 + (len - flen) / step;
        let bins = if self.onesided { flen / 2 + 1 } else { flen };
        let xv = x.to_f64_vec()?;
        let tw: Vec<(f64, f64)> = (0..flen)
            .map(|m| {
                let t = -2.0 * std::f64::consts::PI * m as f64 / flen as f64;
                (t.cos(), t.sin())
            })
            .collect();
        let mut y = vec![0f64; batch * frames * bins * 2];
        let (mut re, mut im, mut tmp) = (vec![0f64; flen], vec![0f64; flen], Vec::new());
        for b in 0..batch {
            for f in 0..frames {
                for j in 0..flen {
                    let at = (b * len + f * step + j) * c_in;
                    let w = window.as_ref().map_or(1.0, |w| w[j]);
                    re[j] = xv[at] * w;
                    im[j] = if c_in == 2 { xv[at + 1] * w } else { 0.0 };
                }
                transform(&mut re, &mut im, false, &tw, &mut tmp);
                let out = &mut y[(b * frames + f) * bins * 2..(b * frames + f + 1) * bins * 2];
                for k in 0..bins {
                    out[2 * k] = re[k];
                    out[2 * k + 1] = im[k];
                }
            }
        }
        let t = Tensor::from_vec(&[batch, frames, bins, 2], y)?;
        Ok(vec![cast(&t, dt, CastOptions::default())?.into()])
    }
}

/// `MelWeightMatrix`: `[dft_length / 2 + 1, num_mel_bins]` triangular filters, evenly spaced on
/// the mel scale (`2595·log10(1 + f/700)`) between the edges, each rising from its left edge's
/// spectrogram bin to its center's and falling to its right edge's (the ONNX reference's
/// spacing: the mel range split in `num_mel_bins + 2` steps, bins `⌊(dft_length + 1)·f / rate⌋`).
struct MelWeightMatrix {
    dtype: DType,
}

pub fn build_mel_weight_matrix(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(MelWeightMatrix { dtype: output_dtype(ctx)? }))
}

impl Op for MelWeightMatrix {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let scalar = |i: usize, what: &str| -> Result<f64> {
            let t = tensor_in(inputs, i, "MelWeightMatrix")?;
            match t.to_f64_vec()?.as_slice() {
                [v] => Ok(*v),
                _ => Err(Error::ShapeMismatch(format!("MelWeightMatrix: {what} must be a scalar, got shape {:?}", t.shape()))),
            }
        };
        let (mels, dft, rate) = (scalar(0, "num_mel_bins")?, scalar(1, "dft_length")?, scalar(2, "sample_rate")?);
        let (lo, hi) = (scalar(3, "lower_edge_hertz")?, scalar(4, "upper_edge_hertz")?);
        if !(1.0..=65536.0).contains(&mels) || !(1.0..=MAX_DFT as f64).contains(&dft) || rate <= 0.0 || !(lo >= 0.0 && lo < hi) {
            return Err(Error::InvalidArgument(format!(
                "MelWeightMatrix: needs 1 <= num_mel_bins ({mels}), 1 <= dft_length ({dft}), sample_rate > 0 ({rate}) and 0 <= lower_edge_hertz < upper_edge_hertz ({lo}, {hi})"
            )));
        }
        let (mels, dft) = (mels as usize, dft as usize);
        let spec = dft / 2 + 1;
        let mel = |f: f64| 2595.0 * (f / 700.0).ln_1p() / std::f64::consts::LN_10;
        let (mlo, mhi) = (mel(lo), mel(hi));
        let step = (mhi - mlo) / (mels + 2) as f64;
        let bins: Vec<i64> = (0..mels + 2)
            .map(|i| {
                let f = 700.0 * ((i as f64 * step + mlo) / 2595.0 * std::f64::consts::LN_10).exp_m1();
                (((dft + 1) as f64 * f) / rate).floor() as i64
            })
            .collect();
        let mut w = vec![0f64; spec * mels];
        let mut set = |j: i64, i: usize, v: f64| -> Result<()> {
            let j = usize::try_from(j).ok().filter(|&j| j < spec).ok_or_else(|| {
                Error::InvalidArgument(format!("MelWeightMatrix: filter {i} reaches spectrogram bin {j} of {spec} (upper_edge_hertz {hi} beyond half the sample rate {rate}?)"))
            })?;
            w[j * mels + i] = v;
            Ok(())
        };
        for i in 0..mels {
            let (l, c, h) = (bins[i], bins[i + 1], bins[i + 2]);
            if c == l {
                set(c, i, 1.0)?;
            } else {
                for j in l..=c {
                    set(j, i, (j - l) as f64 / (c - l) as f64)?;
                }
            }
            for j in c..h {
                set(j, i, (h - j) as f64 / (h - c) as f64)?;
            }
        }
        let t = Tensor::from_vec(&[spec, mels], w)?;
        Ok(vec![cast(&t, self.dtype, CastOptions::default())?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hann_is_sine_squared_and_symmetric_windows_end_on_their_first_value() {
        let pool = crate::executor::pool::ThreadPool::new(1);
        let run = |coeffs, periodic, n: i64| {
            let w = CosineWindow { name: "w", coeffs, periodic, dtype: DType::Float64 };
            let size = Value::Tensor(Tensor::from_vec(&[], vec![n]).unwrap());
            match w.run(&[Some(&size)], &RunContext { pool: &pool }).unwrap().swap_remove(0) {
                Value::Tensor(t) => t.to_f64_vec().unwrap(),
                _ => panic!(),
            }
        };
        let h = run(HANN, true, 10);
        for (i, v) in h.iter().enumerate() {
            assert!((v - (std::f64::consts::PI * i as f64 / 10.0).sin().powi(2)).abs() < 1e-12);
        }
        for c in [HANN, HAMMING, BLACKMAN] {
            let s = run(c, false, 9);
            assert!((s[0] - s[8]).abs() < 1e-12 && (s[4] - 1.0).abs() < 1e-12, "{s:?}");
        }
        assert!(run(HANN, true, 0).is_empty());
    }

    #[test]
    fn stft_frames_a_signal_and_names_bad_inputs() {
        let pool = crate::executor::pool::ThreadPool::new(1);
        let run = |ins: Vec<Option<Tensor>>| {
            let vals: Vec<Option<Value>> = ins.into_iter().map(|t| t.map(Value::Tensor)).collect();
            let args: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
            Stft { onesided: true }.run(&args, &RunContext { pool: &pool }).map(|mut v| match v.swap_remove(0) {
                Value::Tensor(t) => t,
                _ => panic!(),
            })
        };
        let i = |v: i64| Some(Tensor::from_vec(&[], vec![v]).unwrap());
        // A constant signal: every frame's spectrum is its DC term only.
        let sig = Some(Tensor::from_vec(&[1, 10, 1], vec![1f32; 10]).unwrap());
        let y = run(vec![sig.clone(), i(2), None, i(4)]).unwrap();
        assert_eq!(y.shape(), &[1, 4, 3, 2]);
        let v = y.to_f64_vec().unwrap();
        for f in 0..4 {
            assert_eq!(&v[f * 6..f * 6 + 6], &[4.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        }
        let w = Some(Tensor::from_vec(&[3], vec![1f32; 3]).unwrap());
        let e = run(vec![sig.clone(), i(2), w, i(4)]).unwrap_err().to_string();
        assert!(e.contains("frame_length 4 differs from the window's 3 values"), "{e}");
        let e = run(vec![sig.clone(), i(2), None, i(11)]).unwrap_err().to_string();
        assert!(e.contains("shorter than a frame of 11"), "{e}");
        let e = run(vec![sig, i(0), None, i(4)]).unwrap_err().to_string();
        assert!(e.contains("frame_step must be positive"), "{e}");
    }

    #[test]
    fn mel_filters_peak_at_one_and_stay_below_nyquist() {
        let pool = crate::executor::pool::ThreadPool::new(1);
        let run = |hi: f32| {
            let ins = [Tensor::from_vec(&[], vec![8i64]), Tensor::from_vec(&[], vec![64i64]), Tensor::from_vec(&[], vec![8000i64]), Tensor::from_vec(&[], vec![0f32]), Tensor::from_vec(&[], vec![hi])];
            let vals: Vec<Option<Value>> = ins.into_iter().map(|t| Some(Value::Tensor(t.unwrap()))).collect();
            let args: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
            MelWeightMatrix { dtype: DType::Float32 }.run(&args, &RunContext { pool: &pool }).map(|mut v| match v.swap_remove(0) {
                Value::Tensor(t) => t,
                _ => panic!(),
            })
        };
        let m = run(4000.0).unwrap();
        assert_eq!(m.shape(), &[33, 8]);
        let v = m.to_f64_vec().unwrap();
        for i in 0..8 {
            let col: Vec<f64> = (0..33).map(|j| v[j * 8 + i]).collect();
            assert!(col.iter().all(|&x| (0.0..=1.0).contains(&x)) && col.contains(&1.0), "filter {i}: {col:?}");
        }
        let e = run(8000.0).unwrap_err().to_string();
        assert!(e.contains("beyond half the sample rate"), "{e}");
    }

    #[test]
    fn fft_and_direct_sum_agree_with_the_definition() {
        for n in [1usize, 2, 3, 5, 8, 12, 16, 64] {
            let x: Vec<(f64, f64)> = (0..n).map(|j| ((j * 7 % 5) as f64 - 2.0, (j * 3 % 4) as f64 * 0.5)).collect();
            let tw: Vec<(f64, f64)> = (0..n).map(|m| {
                let t = -2.0 * std::f64::consts::PI * m as f64 / n as f64;
                (t.cos(), t.sin())
            }).collect();
            for inverse in [false, true] {
                let (mut re, mut im): (Vec<f64>, Vec<f64>) = x.iter().copied().unzip();
                transform(&mut re, &mut im, inverse, &tw, &mut Vec::new());
                let sign = if inverse { 1.0 } else { -1.0 };
                for k in 0..n {
                    let (mut wr, mut wi) = (0.0, 0.0);
                    for (j, (xr, xi)) in x.iter().enumerate() {
                        let t = sign * 2.0 * std::f64::consts::PI * (j * k) as f64 / n as f64;
                        wr += xr * t.cos() - xi * t.sin();
                        wi += xr * t.sin() + xi * t.cos();
                    }
                    assert!((re[k] - wr).abs() < 1e-9 && (im[k] - wi).abs() < 1e-9, "n={n} inverse={inverse} k={k}");
                }
            }
        }
    }
}
