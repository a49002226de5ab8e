//! Graph transformations applied at session creation.

pub mod fold;
mod inline;

use crate::error::Result;
use crate::graph::ir::{Graph, Model};

pub use inline::inline_functions;

/// The graph a session executes: model-local functions inlined.
pub fn prepare(model: &Model) -> Result<Graph> {
    let g = if model.functions.is_empty() {
        (*model.graph).clone()
    } else {
        inline_functions(&model.graph, &model.functions)?
    };
    Ok(g)
}
