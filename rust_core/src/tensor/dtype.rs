//! Element types. Codes equal ONNX `TensorProto.DataType` values.

use crate::error::{Error, Result};
use half::{bf16, f16};

/// An element type; the discriminant is the ONNX `TensorProto.DataType` code.
///
/// Storage in memory: row-major, one element after the other. Sub-byte types (4-, 2-bit
/// integers, float4) are stored **unpacked, one byte per element** (as `ml_dtypes` does in
/// numpy); they are packed only when serialized to ONNX. Bool is one byte, 0 or 1. Strings are
/// stored as a list of byte strings, not in a flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum DType {
    Float32 = 1,
    Uint8 = 2,
    Int8 = 3,
    Uint16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Float64 = 11,
    Uint32 = 12,
    Uint64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BFloat16 = 16,
    Float8E4M3FN = 17,
    Float8E4M3FNUZ = 18,
    Float8E5M2 = 19,
    Float8E5M2FNUZ = 20,
    Uint4 = 21,
    Int4 = 22,
    Float4E2M1 = 23,
    Float8E8M0 = 24,
    Uint2 = 25,
    Int2 = 26,
}

/// Every element type, in code order.
pub const ALL_DTYPES: [DType; 26] = [
    DType::Float32,
    DType::Uint8,
    DType::Int8,
    DType::Uint16,
    DType::Int16,
    DType::Int32,
    DType::Int64,
    DType::String,
    DType::Bool,
    DType::Float16,
    DType::Float64,
    DType::Uint32,
    DType::Uint64,
    DType::Complex64,
    DType::Complex128,
    DType::BFloat16,
    DType::Float8E4M3FN,
    DType::Float8E4M3FNUZ,
    DType::Float8E5M2,
    DType::Float8E5M2FNUZ,
    DType::Uint4,
    DType::Int4,
    DType::Float4E2M1,
    DType::Float8E8M0,
    DType::Uint2,
    DType::Int2,
];

impl DType {
    /// The dtype of an ONNX `TensorProto.DataType` code.
    pub fn from_code(code: i32) -> Result<DType> {
        ALL_DTYPES
            .iter()
            .copied()
            .find(|d| *d as i32 == code)
            .ok_or_else(|| {
                Error::UnsupportedDtype(format!("unknown element type code {code} (ONNX TensorProto.DataType)"))
            })
    }

    /// The ONNX code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Bytes one element occupies in memory (sub-byte types: 1, they are unpacked).
    /// Strings: the size of nothing (0); they have no flat buffer.
    pub fn size(self) -> usize {
        use DType::*;
        match self {
            Float32 | Int32 | Uint32 => 4,
            Uint8 | Int8 | Bool | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2 | Float8E5M2FNUZ
            | Float8E8M0 | Uint4 | Int4 | Float4E2M1 | Uint2 | Int2 => 1,
            Uint16 | Int16 | Float16 | BFloat16 => 2,
            Int64 | Float64 | Uint64 | Complex64 => 8,
            Complex128 => 16,
            String => 0,
        }
    }

    /// Alignment the elements need in memory: the size of the scalar part (complex numbers are
    /// pairs of floats, so complex64 needs 4 and complex128 needs 8, as in C and numpy).
    pub fn align(self) -> usize {
        match self {
            DType::Complex64 => 4,
            DType::Complex128 => 8,
            d => d.size().max(1),
        }
    }

    /// Bits of one element in serialized ONNX form (4 for int4, 2 for int2...).
    pub fn packed_bits(self) -> usize {
        use DType::*;
        match self {
            Uint4 | Int4 | Float4E2M1 => 4,
            Uint2 | Int2 => 2,
            String => 0,
            d => d.size() * 8,
        }
    }

    /// The ONNX name (`float`, `int64`, `bfloat16`, ...), as in `tensor(float)`.
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            Float32 => "float",
            Uint8 => "uint8",
            Int8 => "int8",
            Uint16 => "uint16",
            Int16 => "int16",
            Int32 => "int32",
            Int64 => "int64",
            String => "string",
            Bool => "bool",
            Float16 => "float16",
            Float64 => "double",
            Uint32 => "uint32",
            Uint64 => "uint64",
            Complex64 => "complex64",
            Complex128 => "complex128",
            BFloat16 => "bfloat16",
            Float8E4M3FN => "float8e4m3fn",
            Float8E4M3FNUZ => "float8e4m3fnuz",
            Float8E5M2 => "float8e5m2",
            Float8E5M2FNUZ => "float8e5m2fnuz",
            Uint4 => "uint4",
            Int4 => "int4",
            Float4E2M1 => "float4e2m1",
            Float8E8M0 => "float8e8m0",
            Uint2 => "uint2",
            Int2 => "int2",
        }
    }

    /// Floating-point types (including the 8- and 4-bit ones).
    pub fn is_float(self) -> bool {
        use DType::*;
        matches!(
            self,
            Float32 | Float64 | Float16 | BFloat16 | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2
                | Float8E5M2FNUZ | Float4E2M1 | Float8E8M0
        )
    }

    /// Signed or unsigned integer types (not bool).
    pub fn is_int(self) -> bool {
        use DType::*;
        matches!(self, Uint8 | Int8 | Uint16 | Int16 | Int32 | Int64 | Uint32 | Uint64 | Uint4 | Int4 | Uint2 | Int2)
    }

    /// Signed integer types.
    pub fn is_signed_int(self) -> bool {
        use DType::*;
        matches!(self, Int8 | Int16 | Int32 | Int64 | Int4 | Int2)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can be viewed as the elements of a tensor of dtype `DTYPE`.
///
/// # Safety
/// Implementors must be plain-old-data: every bit pattern of `size_of::<Self>()` bytes is a valid
/// value, and `size_of::<Self>() == DTYPE.size()`.
pub unsafe trait Element: Copy + Send + Sync + Default + 'static {
    /// The dtype whose storage this type views.
    const DTYPE: DType;
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        unsafe impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
    };
}
element!(f32, Float32);
element!(f64, Float64);
element!(f16, Float16);
element!(bf16, BFloat16);
element!(i8, Int8);
element!(i16, Int16);
element!(i32, Int32);
element!(i64, Int64);
element!(u8, Uint8);
element!(u16, Uint16);
element!(u32, Uint32);
element!(u64, Uint64);

/// Storage-compatible check: may a slice of `T` view a buffer of dtype `d`?
/// `u8` views bool and every one-byte float type; `i8` views the unpacked signed sub-byte ints.
pub fn storage_compatible<T: Element>(d: DType) -> bool {
    if T::DTYPE == d {
        return true;
    }
    match T::DTYPE {
        DType::Uint8 => d.size() == 1 && d != DType::Int8 && d != DType::Int4 && d != DType::Int2 || d == DType::Bool,
        DType::Int8 => matches!(d, DType::Int4 | DType::Int2),
        DType::Uint16 => matches!(d, DType::Float16 | DType::BFloat16),
        DType::Float32 => d == DType::Complex64, // viewed as interleaved (re, im)
        DType::Float64 => d == DType::Complex128,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for d in ALL_DTYPES {
            assert_eq!(DType::from_code(d.code()).unwrap(), d);
        }
        assert!(matches!(DType::from_code(0), Err(Error::UnsupportedDtype(_))));
        assert!(matches!(DType::from_code(99), Err(Error::UnsupportedDtype(_))));
    }

    #[test]
    fn sizes() {
        assert_eq!(DType::Float32.size(), 4);
        assert_eq!(DType::Int4.size(), 1);
        assert_eq!(DType::Int4.packed_bits(), 4);
        assert_eq!(DType::Int2.packed_bits(), 2);
        assert_eq!(DType::Complex128.size(), 16);
        assert!(storage_compatible::<u8>(DType::Bool));
        assert!(!storage_compatible::<u8>(DType::Int8));
        assert!(storage_compatible::<i8>(DType::Int4));
    }
}
