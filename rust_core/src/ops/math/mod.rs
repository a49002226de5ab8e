//! Elementwise math, comparisons, logic, casts, activations, reductions, softmax.
//!
//! Files by kind: `arith.rs` (Add Sub Mul Div Pow Mod), `unary.rs` (Neg Abs Exp Log Sqrt
//! trigonometry Erf Round IsNaN IsInf ...), `activation.rs` (Relu Sigmoid Gelu Clip PRelu SwiGLU ...),
//! `compare.rs` (Equal Greater Less ..., And Or Xor Not, Where), `cast.rs` (Cast CastLike) with
//! `minifloat.rs` (float8/float4/E8M0 codecs), `softmax.rs` (Softmax LogSoftmax Hardmax),
//! `reduce.rs` (Reduce*, ArgMax ArgMin), `variadic.rs` (Sum Mean Max Min), `bitwise.rs` (BitShift
//! Bitwise*), `bitcast.rs` (BitCast), `cumulative.rs` (CumSum CumProd), `einsum.rs` (Einsum),
//! `det.rs` (Det). The elementwise engine is in
//! `broadcast.rs`; dtype dispatch macros and numeric traits in `dispatch.rs`.

#[macro_use]
mod dispatch;
#[macro_use]
mod unary;
mod activation;
mod arith;
mod bitcast;
mod bitwise;
mod broadcast;
mod cast;
mod minifloat;
mod reduce;
mod signal;
mod softmax;
mod variadic;
mod compare;
mod cumulative;
mod det;
mod einsum;
#[cfg(test)]
mod test_util;

use super::Registry;

/// Register this family's operators.
pub fn register(r: &mut Registry) {
    r.add("Add", arith::build_add);
    r.add("DFT", signal::build_dft);
    r.add("STFT", signal::build_stft);
    r.add("MelWeightMatrix", signal::build_mel_weight_matrix);
    r.add("HannWindow", signal::build_hann);
    r.add("HammingWindow", signal::build_hamming);
    r.add("BlackmanWindow", signal::build_blackman);
    r.add("Sub", arith::build_sub);
    r.add("Mul", arith::build_mul);
    r.add("Div", arith::build_div);
    r.add("Pow", arith::build_pow);
    r.add("Mod", arith::build_mod);

    r.add("Neg", unary::build_neg);
    r.add("Abs", unary::build_abs);
    r.add("Sign", unary::build_sign);
    r.add("Reciprocal", unary::build_reciprocal);
    r.add("Exp", unary::build_exp);
    r.add("Log", unary::build_log);
    r.add("Sqrt", unary::build_sqrt);
    r.add("Floor", unary::build_floor);
    r.add("Ceil", unary::build_ceil);
    r.add("Round", unary::build_round);
    r.add("Erf", unary::build_erf);
    r.add("Sin", unary::build_sin);
    r.add("Cos", unary::build_cos);
    r.add("Tan", unary::build_tan);
    r.add("Asin", unary::build_asin);
    r.add("Acos", unary::build_acos);
    r.add("Atan", unary::build_atan);
    r.add("Sinh", unary::build_sinh);
    r.add("Cosh", unary::build_cosh);
    r.add("Asinh", unary::build_asinh);
    r.add("Acosh", unary::build_acosh);
    r.add("Atanh", unary::build_atanh);
    r.add("IsNaN", unary::build_isnan);
    r.add("IsInf", unary::build_isinf);

    r.add("Relu", activation::build_relu);
    r.add("Sigmoid", activation::build_sigmoid);
    r.add("Tanh", activation::build_tanh);
    r.add("HardSigmoid", activation::build_hard_sigmoid);
    r.add("HardSwish", activation::build_hard_swish);
    r.add("LeakyRelu", activation::build_leaky_relu);
    r.add("PRelu", activation::build_prelu);
    r.add("Elu", activation::build_elu);
    r.add("Selu", activation::build_selu);
    r.add("Celu", activation::build_celu);
    r.add("Softplus", activation::build_softplus);
    r.add("Softsign", activation::build_softsign);
    r.add("Mish", activation::build_mish);
    r.add("ThresholdedRelu", activation::build_thresholded_relu);
    r.add("Gelu", activation::build_gelu);
    // The fused form of the exporters' erf GELU chain (optimizer::fuse::fuse_gelu).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "Gelu", activation::build_gelu);
    r.add("Shrink", activation::build_shrink);
    r.add("Swish", activation::build_swish);
    r.add("Clip", activation::build_clip);
    r.add("SwiGLU", activation::build_swiglu);

    r.add("Equal", compare::build_equal);
    r.add("Greater", compare::build_greater);
    r.add("GreaterOrEqual", compare::build_greater_or_equal);
    r.add("Less", compare::build_less);
    r.add("LessOrEqual", compare::build_less_or_equal);
    r.add("And", compare::build_and);
    r.add("Or", compare::build_or);
    r.add("Xor", compare::build_xor);
    r.add("Not", compare::build_not);
    r.add("Where", compare::build_where);

    r.add("Cast", cast::build_cast);
    r.add("CastLike", cast::build_cast_like);

    r.add("Softmax", softmax::build_softmax);
    r.add("LogSoftmax", softmax::build_log_softmax);
    r.add("Hardmax", softmax::build_hardmax);

    r.add("ReduceSum", reduce::build_reduce_sum);
    r.add("ReduceMean", reduce::build_reduce_mean);
    r.add("ReduceMax", reduce::build_reduce_max);
    r.add("ReduceMin", reduce::build_reduce_min);
    r.add("ReduceProd", reduce::build_reduce_prod);
    r.add("ReduceL1", reduce::build_reduce_l1);
    r.add("ReduceL2", reduce::build_reduce_l2);
    r.add("ReduceLogSum", reduce::build_reduce_log_sum);
    r.add("ReduceLogSumExp", reduce::build_reduce_log_sum_exp);
    r.add("ReduceSumSquare", reduce::build_reduce_sum_square);
    r.add("ArgMax", reduce::build_argmax);
    r.add("ArgMin", reduce::build_argmin);

    r.add("Sum", variadic::build_sum);
    r.add("Mean", variadic::build_mean);
    r.add("Max", variadic::build_max);
    r.add("Min", variadic::build_min);

    r.add("BitShift", bitwise::build_bitshift);
    r.add("BitwiseAnd", bitwise::build_bitwise_and);
    r.add("BitwiseOr", bitwise::build_bitwise_or);
    r.add("BitwiseXor", bitwise::build_bitwise_xor);
    r.add("BitwiseNot", bitwise::build_bitwise_not);
    r.add("BitCast", bitcast::build_bitcast);
    r.add("CumSum", cumulative::build_cumsum);
    r.add("CumProd", cumulative::build_cumprod);
    r.add("Einsum", einsum::build_einsum);
    r.add("Det", det::build_det);
}
