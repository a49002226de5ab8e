//! Control flow (If, Loop, Scan), sequences and optionals.

use super::Registry;

/// Register this family's operators.
pub fn register(_r: &mut Registry) {}
