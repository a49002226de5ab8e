//! Vectorizable elementwise activations over slices (used by the recurrent layers).
//!
//! `f32` uses a branch-free rational approximation of tanh (Eigen's, |error| < 2e-7 absolute)
//! that the compiler vectorizes; `f64` uses the standard library.

use crate::kernels::float::Float;

/// tanh of an `f32`, branch-free rational approximation.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    p = x2 * p + -8.604_671_5e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= x;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    p / q
}

/// Logistic sigmoid of an `f32` via tanh.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    0.5 + 0.5 * tanh_f32(0.5 * x)
}

/// Fast tanh for any compute float (`f32`: the approximation; `f64`: exact).
#[inline(always)]
pub fn fast_tanh<T: Float>(x: T) -> T {
    if std::mem::size_of::<T>() == 4 {
        T::from_f32(tanh_f32(x.to_f32()))
    } else {
        x.tanh()
    }
}

/// Fast sigmoid for any compute float.
#[inline(always)]
pub fn fast_sigmoid<T: Float>(x: T) -> T {
    if std::mem::size_of::<T>() == 4 {
        T::from_f32(sigmoid_f32(x.to_f32()))
    } else {
        x.sigmoid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximations_are_accurate() {
        let mut worst: f32 = 0.0;
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            worst = worst.max((tanh_f32(x) - x.tanh()).abs());
            worst = worst.max((sigmoid_f32(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(worst < 1e-6, "worst error {worst}");
        assert_eq!(tanh_f32(100.0), tanh_f32(8.0));
        assert!(tanh_f32(0.0) == 0.0);
    }
}
