//! Encoding and decoding of the small float formats: float8 (E4M3FN, E4M3FNUZ, E5M2,
//! E5M2FNUZ), float4 E2M1 and float8 E8M0, matching the ONNX specification and `ml_dtypes`
//! (round to nearest even; saturation as the Cast `saturate` attribute asks).

use crate::tensor::DType;

/// How a format spends its special encodings.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Special {
    /// E4M3FN: no infinities; S.1111.111 is NaN.
    Fn,
    /// FNUZ formats: no infinities, no negative zero; 0x80 is the only NaN.
    Fnuz,
    /// E5M2: IEEE-like infinities and NaNs.
    Ieee,
    /// E2M1: neither infinities nor NaNs (out of range saturates).
    None,
}

/// A small binary float format.
#[derive(Clone, Copy, Debug)]
pub struct MiniFloat {
    bits: u32,
    man: u32,
    bias: i32,
    max: f64,
    special: Special,
}

pub const E4M3FN: MiniFloat = MiniFloat { bits: 8, man: 3, bias: 7, max: 448.0, special: Special::Fn };
pub const E4M3FNUZ: MiniFloat = MiniFloat { bits: 8, man: 3, bias: 8, max: 240.0, special: Special::Fnuz };
pub const E5M2: MiniFloat = MiniFloat { bits: 8, man: 2, bias: 15, max: 57344.0, special: Special::Ieee };
pub const E5M2FNUZ: MiniFloat = MiniFloat { bits: 8, man: 2, bias: 16, max: 57344.0, special: Special::Fnuz };
pub const E2M1: MiniFloat = MiniFloat { bits: 4, man: 1, bias: 1, max: 6.0, special: Special::None };

impl MiniFloat {
    /// The format of a dtype, if it is one of the float8 / float4 types (not E8M0).
    pub fn of(d: DType) -> Option<MiniFloat> {
        match d {
            DType::Float8E4M3FN => Some(E4M3FN),
            DType::Float8E4M3FNUZ => Some(E4M3FNUZ),
            DType::Float8E5M2 => Some(E5M2),
            DType::Float8E5M2FNUZ => Some(E5M2FNUZ),
            DType::Float4E2M1 => Some(E2M1),
            _ => None,
        }
    }

    fn sign_bit(&self) -> u8 {
        1 << (self.bits - 1)
    }

    fn exp_mask(&self) -> u32 {
        (1 << (self.bits - 1 - self.man)) - 1
    }

    /// Largest finite value's encoding (positive).
    fn max_code(&self) -> u8 {
        match self.special {
            Special::Fn => 0x7E,
            Special::Fnuz => 0x7F,
            Special::Ieee => 0x7B,
            Special::None => 0x7,
        }
    }

    /// Encoding of a value too large for the format when not saturating.
    fn overflow_code(&self, neg: bool) -> u8 {
        let s = if neg { self.sign_bit() } else { 0 };
        match self.special {
            Special::Fn => 0x7F | s,
            Special::Fnuz => 0x80,
            Special::Ieee => 0x7C | s,
            Special::None => self.max_code() | s,
        }
    }

    fn nan_code(&self, neg: bool) -> u8 {
        let s = if neg { self.sign_bit() } else { 0 };
        match self.special {
            Special::Fn => 0x7F | s,
            Special::Fnuz => 0x80,
            Special::Ieee => 0x7E | s,
            // ml_dtypes turns NaN into a (sign-flipped) zero for float4.
            Special::None => if neg { 0 } else { 0x8 },
        }
    }

    /// Encode `x`, rounding to nearest even; out-of-range values saturate to +-max when
    /// `saturate`, else become the format's infinity or NaN.
    pub fn encode(&self, x: f64, saturate: bool) -> u8 {
        let neg = x.is_sign_negative();
        let s = if neg { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan_code(neg);
        }
        let saturate = saturate || self.special == Special::None;
        let a = x.abs();
        if a.is_infinite() {
            return if saturate { self.max_code() | s } else { self.overflow_code(neg) };
        }
        let emin = 1 - self.bias;
        let e = if a == 0.0 { emin } else { (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(emin) };
        let q = (2f64).powi(e - self.man as i32);
        let m = (a / q).round_ties_even();
        let v = m * q;
        if v > self.max {
            return if saturate { self.max_code() | s } else { self.overflow_code(neg) };
        }
        if v == 0.0 {
            return if self.special == Special::Fnuz { 0 } else { s };
        }
        let one = 1u64 << self.man;
        let code = if v < (2f64).powi(emin) {
            m as u64
        } else {
            let e2 = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
            let mant = (v / (2f64).powi(e2 - self.man as i32)) as u64 - one;
            (((e2 + self.bias) as u64) << self.man) | mant
        };
        code as u8 | s
    }

    /// Decode an encoding to its value.
    pub fn decode(&self, code: u8) -> f64 {
        let c = code as u32;
        let neg = c & (self.sign_bit() as u32) != 0;
        let exp = (c >> self.man) & self.exp_mask();
        let mant = c & ((1 << self.man) - 1);
        match self.special {
            Special::Fn if exp == self.exp_mask() && mant == (1 << self.man) - 1 => return f64::NAN,
            Special::Fnuz if code == 0x80 => return f64::NAN,
            Special::Ieee if exp == self.exp_mask() => {
                return if mant != 0 {
                    f64::NAN
                } else if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            _ => {}
        }
        let v = if exp == 0 {
            mant as f64 * (2f64).powi(1 - self.bias - self.man as i32)
        } else {
            (1.0 + mant as f64 / (1u32 << self.man) as f64) * (2f64).powi(exp as i32 - self.bias)
        };
        if neg {
            -v
        } else {
            v
        }
    }
}

/// Decode float8 E8M0 (a power of two; 0xFF is NaN).
pub fn e8m0_decode(code: u8) -> f64 {
    if code == 0xFF {
        f64::NAN
    } else {
        (2f64).powi(code as i32 - 127)
    }
}

/// How E8M0 encoding rounds a value that is not a power of two.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum E8M0Round {
    Up,
    Down,
    Nearest,
}

/// Encode float8 E8M0 from the value's float32 representation (as `onnx.numpy_helper`).
pub fn e8m0_encode(x: f32, saturate: bool, mode: E8M0Round) -> u8 {
    let bits = x.to_bits();
    let exponent = (bits >> 23) & 0xFF;
    if exponent == 0xFF {
        return 0xFF;
    }
    let mut e = exponent;
    match mode {
        E8M0Round::Up => {
            let has_fraction = bits & 0x7F_FFFF != 0;
            if has_fraction && !(saturate && exponent == 0xFE) {
                e += 1;
            }
        }
        E8M0Round::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1F_FFFF != 0;
            let lsb = exponent > 0;
            let round_up = g && (r || s || lsb);
            if round_up && !(saturate && exponent == 0xFE) {
                e += 1;
            }
        }
        E8M0Round::Down => {}
    }
    e.min(0xFF) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ml_dtypes() {
        // Values from ml_dtypes: [nan, -nan, inf, -inf, 1e6, -1e6, -0.0, 470, 464, -1e-9, 2e-3]
        let xs = [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e6, -1e6, -0.0, 470.0, 464.0, -1e-9, 2e-3];
        let check = |f: MiniFloat, want: [u8; 11]| {
            let got: Vec<u8> = xs.iter().map(|x| f.encode(*x, false)).collect();
            assert_eq!(got, want.to_vec(), "{f:?}");
        };
        check(E4M3FN, [0x7f, 0xff, 0x7f, 0xff, 0x7f, 0xff, 0x80, 0x7f, 0x7e, 0x80, 0x1]);
        check(E4M3FNUZ, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x0, 0x80, 0x80, 0x0, 0x2]);
        check(E5M2, [0x7e, 0xfe, 0x7c, 0xfc, 0x7c, 0xfc, 0x80, 0x5f, 0x5f, 0x80, 0x18]);
        check(E5M2FNUZ, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x0, 0x63, 0x63, 0x0, 0x1c]);
        check(E2M1, [0x8, 0x0, 0x7, 0xf, 0x7, 0xf, 0x8, 0x7, 0x7, 0x8, 0x0]);
        assert_eq!(E4M3FN.encode(1e6, true), 0x7e);
        assert_eq!(E4M3FN.encode(-1e6, true), 0xfe);
        assert_eq!(E5M2.encode(f64::INFINITY, true), 0x7b);
    }

    #[test]
    fn round_trips_every_code() {
        for f in [E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ] {
            for c in 0..=255u8 {
                let v = f.decode(c);
                if v.is_nan() || v.is_infinite() {
                    continue;
                }
                let back = f.encode(v, false);
                let same = back == c || (v == 0.0 && f.decode(back) == 0.0);
                assert!(same, "{f:?}: code {c:#x} -> {v} -> {back:#x}");
            }
        }
        assert_eq!(E4M3FN.decode(0x7e), 448.0);
        assert_eq!(E4M3FNUZ.decode(0x7f), 240.0);
        assert_eq!(E5M2FNUZ.decode(0x7f), 57344.0);
        assert_eq!(E2M1.decode(0x7), 6.0);
        assert_eq!(E2M1.decode(0x1), 0.5);
    }

    #[test]
    fn e8m0() {
        let xs = [0.0f32, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0];
        let got: Vec<u8> = xs.iter().map(|x| e8m0_encode(*x, true, E8M0Round::Up)).collect();
        // to_float8e8m0: 0 -> 0, 0.124 -> 2^-3 (124), 0.25 -> 125, ..., 1.1 -> 2 (128)
        assert_eq!(got, vec![0, 124, 125, 126, 128, 128, 129, 130]);
        assert_eq!(e8m0_decode(127), 1.0);
        assert!(e8m0_decode(255).is_nan());
    }
}
