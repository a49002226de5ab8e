//! Runtime values: tensors, sequences of values, optionals, maps.

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// A value flowing along a graph edge.
#[derive(Debug, Clone)]
pub enum Value {
    /// A dense tensor.
    Tensor(Tensor),
    /// An ONNX sequence (elements of one type; tensors in practice).
    Sequence(Vec<Value>),
    /// An ONNX optional: `None` is the empty optional.
    Optional(Option<Box<Value>>),
    /// An ONNX map (from `ai.onnx.ml` operators): keys tensor and values tensor of equal length.
    Map(Tensor, Tensor),
}

impl Value {
    /// "tensor", "sequence", "optional" or "map", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(_) => "tensor",
            Value::Sequence(_) => "sequence",
            Value::Optional(_) => "optional",
            Value::Map(..) => "map",
        }
    }

    /// The tensor inside, or an error naming what it is instead.
    pub fn as_tensor(&self) -> Result<&Tensor> {
        match self {
            Value::Tensor(t) => Ok(t),
            v => Err(Error::InvalidArgument(format!("expected a tensor, got a {}", v.kind()))),
        }
    }

    /// Consume into a tensor.
    pub fn into_tensor(self) -> Result<Tensor> {
        match self {
            Value::Tensor(t) => Ok(t),
            v => Err(Error::InvalidArgument(format!("expected a tensor, got a {}", v.kind()))),
        }
    }

    /// The elements of a sequence.
    pub fn as_sequence(&self) -> Result<&[Value]> {
        match self {
            Value::Sequence(s) => Ok(s),
            v => Err(Error::InvalidArgument(format!("expected a sequence, got a {}", v.kind()))),
        }
    }

    /// The element type, for tensors.
    pub fn dtype(&self) -> Option<DType> {
        match self {
            Value::Tensor(t) => Some(t.dtype()),
            _ => None,
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::Tensor(t)
    }
}
