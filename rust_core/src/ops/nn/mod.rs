//! Neural-network operators: MatMul/Gemm, convolutions, pooling, normalizations, recurrent layers, resize, quantization.

use super::Registry;

/// Register this family's operators.
pub fn register(_r: &mut Registry) {}
