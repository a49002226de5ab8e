//! Runtime CPU feature detection and per-ISA code paths.
//!
//! Hot loops are written once as `#[inline(always)]` generic functions over a [`MulAdd`]
//! strategy and instantiated by [`multiversion!`] three times: for AVX-512 (F+VL), for AVX2+FMA
//! and for the baseline target (scalar or SSE2, whatever the compiler vectorizes to). The
//! path is chosen at each call from [`active`]: the best the CPU supports, lowered by
//! `PYML_INTEROP_ISA=scalar|avx2|avx512` (read once) or by [`force`] (tests force each path and
//! compare the results). Paths never go above what the CPU reports, so forcing is always safe.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Instruction-set levels with a dedicated code path, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The compilation target's baseline (SSE2 on x86-64), no FMA.
    Scalar = 0,
    /// AVX2 with FMA (256-bit vectors).
    Avx2 = 1,
    /// AVX-512 F + VL (512-bit vectors).
    Avx512 = 2,
}

impl Isa {
    fn from_u8(v: u8) -> Isa {
        match v {
            2 => Isa::Avx512,
            1 => Isa::Avx2,
            _ => Isa::Scalar,
        }
    }

    /// Lower-case name (`scalar`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parse a name as accepted by `PYML_INTEROP_ISA`.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" | "generic" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// 255: not initialised yet; otherwise the active level.
static ACTIVE: AtomicU8 = AtomicU8::new(255);

/// The level kernels use now: [`detected`], lowered by `PYML_INTEROP_ISA` or [`force`].
#[inline]
pub fn active() -> Isa {
    let v = ACTIVE.load(Ordering::Relaxed);
    if v != 255 {
        return Isa::from_u8(v);
    }
    let env = std::env::var("PYML_INTEROP_ISA").ok().and_then(|s| Isa::parse(&s));
    let isa = env.map_or(detected(), |e| e.min(detected()));
    ACTIVE.store(isa as u8, Ordering::Relaxed);
    isa
}

/// Force a level (clamped to [`detected`]); `None` restores the default. Returns the level
/// now active. Process-wide: meant for tests and benchmarks comparing paths.
pub fn force(isa: Option<Isa>) -> Isa {
    let isa = isa.map_or(detected(), |i| i.min(detected()));
    ACTIVE.store(isa as u8, Ordering::Relaxed);
    isa
}

/// How `a * b + c` is computed: fused on FMA paths, separately on the baseline path (where
/// `f32::mul_add` would be a slow library call).
pub trait MulAdd {
    /// True for code compiled (and only ever run) with AVX2+FMA, so it may use their
    /// intrinsics directly.
    const AVX2: bool;
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

/// One rounding (`vfmadd`), for paths compiled with FMA.
pub struct Fused;
/// Multiply then add.
pub struct Plain;

impl MulAdd for Fused {
    const AVX2: bool = true;
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Plain {
    const AVX2: bool = false;
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Define `fn name(args) -> R` that runs `body::<M>(args)` compiled for the [`active`] ISA.
/// `body` must be `#[inline(always)]` and generic over `M: MulAdd`.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$($lt:lifetime),*>)? ($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:ident;) => {
        $(#[$m])* $vis fn $name $(<$($lt),*>)? ($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v512 $(<$($lt),*>)? ($($a: $t),*) $(-> $r)? {
                    $body::<$crate::kernels::simd::Fused>($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256 $(<$($lt),*>)? ($($a: $t),*) $(-> $r)? {
                    $body::<$crate::kernels::simd::Fused>($($a),*)
                }
                match $crate::kernels::simd::active() {
                    // SAFETY: `active` never exceeds what the CPU reports.
                    $crate::kernels::simd::Isa::Avx512 => return unsafe { v512($($a),*) },
                    $crate::kernels::simd::Isa::Avx2 => return unsafe { v256($($a),*) },
                    $crate::kernels::simd::Isa::Scalar => {}
                }
            }
            $body::<$crate::kernels::simd::Plain>($($a),*)
        }
    };
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use std::sync::Mutex;

    /// Serialises tests that force ISA levels.
    pub static ISA_LOCK: Mutex<()> = Mutex::new(());

    /// Run `f` once per ISA level this CPU supports (forced), then restore the default.
    pub fn for_each_isa(mut f: impl FnMut(Isa)) {
        let _g = ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if isa <= detected() {
                assert_eq!(force(Some(isa)), isa);
                f(isa);
            }
        }
        force(None);
    }

    /// For tests of AVX-512-only kernels: holds the ISA lock (no test forcing a level can lower
    /// it between the check and the kernel call, a race seen in a CI run) when the active level
    /// is AVX-512; `None`, after printing that `what` is skipped, otherwise.
    pub fn avx512_guard(what: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
        let guard = ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if active() >= Isa::Avx512 {
            Some(guard)
        } else {
            eprintln!("skipped: {what} needs AVX-512");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_clamp() {
        assert_eq!(Isa::parse("AVX2"), Some(Isa::Avx2));
        assert_eq!(Isa::parse("scalar"), Some(Isa::Scalar));
        assert_eq!(Isa::parse("sse9"), None);
        let _g = test_util::ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(force(Some(Isa::Avx512)), detected().min(Isa::Avx512));
        assert_eq!(force(Some(Isa::Scalar)), Isa::Scalar);
        assert_eq!(active(), Isa::Scalar);
        force(None);
        assert_eq!(active(), detected());
    }
}
