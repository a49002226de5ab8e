//! Graph transformations applied at session creation.

pub mod fold;
pub mod fuse;
mod inline;
pub mod layout;

use crate::error::Result;
use crate::graph::ir::{Graph, Model};

pub use inline::inline_functions;

/// The graph a session executes: model-local functions inlined, zero Pads and per-channel
/// Mul/Add folded into the convolutions around them, activations fused into the convolutions
/// before them, GELU and layer-norm chains fused into one node each, chains of pointwise and
/// depthwise convolutions run channels-last (see [`layout`]; `PYML_INTEROP_NO_LAYOUT` keeps them
/// NCHW), the remaining NCHW pointwise convolutions feeding a depthwise one fused with it on
/// AVX-512 CPUs ([`fuse::fuse_expand_depthwise`]; `PYML_INTEROP_NO_EXPAND_FUSION` keeps them
/// apart) and so are convolutions feeding a MaxPool ([`fuse::fuse_conv_maxpool`];
/// `PYML_INTEROP_NO_POOL_FUSION`), unless `PYML_INTEROP_NO_FUSION` is set, for comparisons.
pub fn prepare(model: &Model) -> Result<Graph> {
    let mut g = if model.functions.is_empty() {
        (*model.graph).clone()
    } else {
        inline_functions(&model.graph, &model.functions)?
    };
    if std::env::var_os("PYML_INTEROP_NO_FUSION").is_none() {
        let opset = model
            .opsets
            .iter()
            .find(|(d, _)| crate::ops::normalize_domain(d).is_empty())
            .map_or(0, |(_, v)| *v);
        fuse::fold_pad_into_conv(&mut g, opset);
        fuse::fold_conv_affine(&mut g);
        fuse::fuse_conv_activations(&mut g, opset);
        fuse::fuse_gelu(&mut g);
        fuse::fuse_gelu_tanh(&mut g);
        fuse::fuse_layer_norm(&mut g);
        fuse::fuse_matmul_bias(&mut g);
        if std::env::var_os("PYML_INTEROP_NO_LAYOUT").is_none() {
            layout::channels_last(&mut g);
        }
        if crate::kernels::sgemm::implicit_available() && std::env::var_os("PYML_INTEROP_NO_EXPAND_FUSION").is_none() {
            fuse::fuse_expand_depthwise(&mut g);
        }
        if crate::kernels::sgemm::implicit_available() && std::env::var_os("PYML_INTEROP_NO_POOL_FUSION").is_none() {
            fuse::fuse_conv_maxpool(&mut g);
        }
        fuse::prune_unused_initializers(&mut g);
    }
    Ok(g)
}
