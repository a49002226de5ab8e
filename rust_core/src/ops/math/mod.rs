//! Elementwise math, comparisons, logic, casts, activations, reductions, softmax.

use super::Registry;

/// Register this family's operators.
pub fn register(_r: &mut Registry) {}
