//! Plain Rust structs for the messages of `onnx.proto` (IR version 14 and earlier).
//!
//! Field names follow `onnx.proto`; the field number of each is given in its doc comment. Proto2
//! optional scalars are plain values (absent reads as the default); presence is kept where it
//! changes meaning: optional sub-messages are `Option`, `oneof`s are enums, and
//! `TensorProto.raw_data` is `Option<Bytes>` (a zero-copy range of the model's bytes).
//!
//! Every message has `unknown_fields`: the encoded bytes of fields this reader does not know
//! (newer ONNX versions, `NodeProto.device_configurations`, `ModelProto.configuration`...). They
//! are written back verbatim after the known fields, so decoding and re-encoding is lossless.

use super::bytes::Bytes;
use std::path::PathBuf;

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    /// No type given (IR version 1 models).
    pub const UNDEFINED: i32 = 0;
    /// `f`.
    pub const FLOAT: i32 = 1;
    /// `i`.
    pub const INT: i32 = 2;
    /// `s`.
    pub const STRING: i32 = 3;
    /// `t`.
    pub const TENSOR: i32 = 4;
    /// `g`.
    pub const GRAPH: i32 = 5;
    /// `floats`.
    pub const FLOATS: i32 = 6;
    /// `ints`.
    pub const INTS: i32 = 7;
    /// `strings`.
    pub const STRINGS: i32 = 8;
    /// `tensors`.
    pub const TENSORS: i32 = 9;
    /// `graphs`.
    pub const GRAPHS: i32 = 10;
    /// `sparse_tensor`.
    pub const SPARSE_TENSOR: i32 = 11;
    /// `sparse_tensors`.
    pub const SPARSE_TENSORS: i32 = 12;
    /// `tp`.
    pub const TYPE_PROTO: i32 = 13;
    /// `type_protos`.
    pub const TYPE_PROTOS: i32 = 14;
}

/// `TensorProto.DataLocation` values.
pub mod data_location {
    /// Data is inside the message (`raw_data` or a typed field).
    pub const DEFAULT: i32 = 0;
    /// Data is in a file described by `external_data`.
    pub const EXTERNAL: i32 = 1;
}

/// A model: metadata, operator set imports, the main graph, functions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelProto {
    /// 1: ONNX IR version.
    pub ir_version: i64,
    /// 8: operator sets the model uses.
    pub opset_import: Vec<OperatorSetIdProto>,
    /// 2: the tool that produced the model.
    pub producer_name: String,
    /// 3: version of that tool.
    pub producer_version: String,
    /// 4: reverse-DNS namespace of the model.
    pub domain: String,
    /// 5: version of the model itself.
    pub model_version: i64,
    /// 6: documentation.
    pub doc_string: String,
    /// 7: the main graph.
    pub graph: Option<GraphProto>,
    /// 14: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// 20: training information.
    pub training_info: Vec<TrainingInfoProto>,
    /// 25: model-local functions.
    pub functions: Vec<FunctionProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
    /// Not serialized: the directory external data locations are relative to. Set by
    /// `load_model_file`; `None` for models decoded from bytes.
    pub base_dir: Option<PathBuf>,
}

/// A computation graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphProto {
    /// 1: nodes, in topological order.
    pub node: Vec<NodeProto>,
    /// 2: name.
    pub name: String,
    /// 5: constant tensors (weights; defaults of inputs with the same name).
    pub initializer: Vec<TensorProto>,
    /// 15: sparse constant tensors.
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// 10: documentation.
    pub doc_string: String,
    /// 11: inputs.
    pub input: Vec<ValueInfoProto>,
    /// 12: outputs.
    pub output: Vec<ValueInfoProto>,
    /// 13: types of intermediate values.
    pub value_info: Vec<ValueInfoProto>,
    /// 14: quantization parameters of tensors.
    pub quantization_annotation: Vec<TensorAnnotation>,
    /// 16: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// One operator invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeProto {
    /// 1: input value names ("" for an omitted optional input).
    pub input: Vec<String>,
    /// 2: output value names.
    pub output: Vec<String>,
    /// 3: node name.
    pub name: String,
    /// 4: operator type.
    pub op_type: String,
    /// 7: operator domain ("" is `ai.onnx`).
    pub domain: String,
    /// 8: function overload id.
    pub overload: String,
    /// 5: attributes.
    pub attribute: Vec<AttributeProto>,
    /// 6: documentation.
    pub doc_string: String,
    /// 9: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader (e.g. 10, `device_configurations`).
    pub unknown_fields: Vec<u8>,
}

/// A named attribute value of a node; `type` says which value field is in use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeProto {
    /// 1: name.
    pub name: String,
    /// 21: in a function body, the name of the caller's attribute this one refers to.
    pub ref_attr_name: String,
    /// 13: documentation.
    pub doc_string: String,
    /// 20: which value field is used (see [`attribute_type`]).
    pub r#type: i32,
    /// 2: float value.
    pub f: f32,
    /// 3: int value.
    pub i: i64,
    /// 4: string value (bytes, UTF-8 by convention).
    pub s: Vec<u8>,
    /// 5: tensor value.
    pub t: Option<Box<TensorProto>>,
    /// 6: graph value.
    pub g: Option<Box<GraphProto>>,
    /// 22: sparse tensor value.
    pub sparse_tensor: Option<Box<SparseTensorProto>>,
    /// 14: type value.
    pub tp: Option<Box<TypeProto>>,
    /// 7: list of floats.
    pub floats: Vec<f32>,
    /// 8: list of ints.
    pub ints: Vec<i64>,
    /// 9: list of strings.
    pub strings: Vec<Vec<u8>>,
    /// 10: list of tensors.
    pub tensors: Vec<TensorProto>,
    /// 11: list of graphs.
    pub graphs: Vec<GraphProto>,
    /// 23: list of sparse tensors.
    pub sparse_tensors: Vec<SparseTensorProto>,
    /// 15: list of types.
    pub type_protos: Vec<TypeProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A tensor value: shape, element type, and data in one of several storage forms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorProto {
    /// 1: shape.
    pub dims: Vec<i64>,
    /// 2: element type (`TensorProto.DataType`, the code of [`crate::DType`]).
    pub data_type: i32,
    /// 3: segment of a chunked tensor (not supported when converting to a tensor).
    pub segment: Option<Segment>,
    /// 4: float and complex64 data.
    pub float_data: Vec<f32>,
    /// 5: data of int32 and narrower types (see `onnx.proto` for the packing rules).
    pub int32_data: Vec<i32>,
    /// 6: string data.
    pub string_data: Vec<Vec<u8>>,
    /// 7: int64 data.
    pub int64_data: Vec<i64>,
    /// 8: name.
    pub name: String,
    /// 12: documentation.
    pub doc_string: String,
    /// 9: little-endian fixed-width data (sub-byte types packed); a zero-copy range of the
    /// bytes the model was decoded from.
    pub raw_data: Option<Bytes>,
    /// 13: location of external data (`location`, `offset`, `length`, `checksum`).
    pub external_data: Vec<StringStringEntryProto>,
    /// 14: where the data is (see [`data_location`]).
    pub data_location: i32,
    /// 10: double and complex128 data.
    pub double_data: Vec<f64>,
    /// 11: uint32 and uint64 data.
    pub uint64_data: Vec<u64>,
    /// 16: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TensorProto.Segment`: the range of a chunked tensor held by one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segment {
    /// 1: first element.
    pub begin: i64,
    /// 2: one past the last element.
    pub end: i64,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A sparse tensor in coordinate format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseTensorProto {
    /// 1: the non-zero values, a 1-D tensor of NNZ elements.
    pub values: Option<TensorProto>,
    /// 2: int64 indices: `[NNZ]` linear indices or `[NNZ, rank]` coordinates.
    pub indices: Option<TensorProto>,
    /// 3: shape of the dense tensor.
    pub dims: Vec<i64>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A named, typed value (graph input, output, or intermediate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueInfoProto {
    /// 1: name.
    pub name: String,
    /// 2: type (absent when unknown).
    pub r#type: Option<TypeProto>,
    /// 3: documentation.
    pub doc_string: String,
    /// 4: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// The type of a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeProto {
    /// The `value` oneof (fields 1, 4, 5, 7, 8, 9); `None` when no member is set.
    pub value: Option<TypeValue>,
    /// 6: denotation.
    pub denotation: String,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// The `TypeProto.value` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeValue {
    /// 1: `tensor_type`.
    Tensor(TensorTypeProto),
    /// 4: `sequence_type`.
    Sequence(SequenceTypeProto),
    /// 5: `map_type`.
    Map(MapTypeProto),
    /// 9: `optional_type`.
    Optional(OptionalTypeProto),
    /// 8: `sparse_tensor_type`.
    SparseTensor(TensorTypeProto),
    /// 7: `opaque_type`.
    Opaque(OpaqueTypeProto),
}

/// `TypeProto.Tensor` (also used for `TypeProto.SparseTensor`, which has the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorTypeProto {
    /// 1: element type code.
    pub elem_type: i32,
    /// 2: shape; `None` means the rank is unknown (an empty shape is a scalar).
    pub shape: Option<TensorShapeProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TypeProto.Sequence`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceTypeProto {
    /// 1: element type.
    pub elem_type: Option<Box<TypeProto>>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TypeProto.Map`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapTypeProto {
    /// 1: key element type code.
    pub key_type: i32,
    /// 2: value type.
    pub value_type: Option<Box<TypeProto>>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TypeProto.Optional`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionalTypeProto {
    /// 1: element type.
    pub elem_type: Option<Box<TypeProto>>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TypeProto.Opaque`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpaqueTypeProto {
    /// 1: domain.
    pub domain: String,
    /// 2: name.
    pub name: String,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A tensor shape: one entry per dimension.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorShapeProto {
    /// 1: dimensions.
    pub dim: Vec<Dimension>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// `TensorShapeProto.Dimension`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dimension {
    /// The `value` oneof.
    pub value: DimValue,
    /// 3: denotation.
    pub denotation: String,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// The `TensorShapeProto.Dimension.value` oneof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DimValue {
    /// Neither member set: an unknown dimension.
    #[default]
    Unknown,
    /// 1: `dim_value`, a fixed size.
    Value(i64),
    /// 2: `dim_param`, a symbolic size.
    Param(String),
}

/// An operator set import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorSetIdProto {
    /// 1: domain ("" is `ai.onnx`).
    pub domain: String,
    /// 2: version.
    pub version: i64,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A function: a named graph of nodes usable as an operator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionProto {
    /// 1: name (the op_type that calls it).
    pub name: String,
    /// 4: input names.
    pub input: Vec<String>,
    /// 5: output names.
    pub output: Vec<String>,
    /// 6: names of attributes without default.
    pub attribute: Vec<String>,
    /// 11: attributes with default values.
    pub attribute_proto: Vec<AttributeProto>,
    /// 7: body.
    pub node: Vec<NodeProto>,
    /// 8: documentation.
    pub doc_string: String,
    /// 9: operator sets the body uses.
    pub opset_import: Vec<OperatorSetIdProto>,
    /// 10: domain.
    pub domain: String,
    /// 13: overload id.
    pub overload: String,
    /// 12: types of values in the body.
    pub value_info: Vec<ValueInfoProto>,
    /// 14: named metadata.
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// A key/value string pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StringStringEntryProto {
    /// 1: key.
    pub key: String,
    /// 2: value.
    pub value: String,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// Training information of a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingInfoProto {
    /// 1: initialization graph.
    pub initialization: Option<GraphProto>,
    /// 2: training step graph.
    pub algorithm: Option<GraphProto>,
    /// 3: initialization outputs bound to initializers.
    pub initialization_binding: Vec<StringStringEntryProto>,
    /// 4: algorithm outputs bound to initializers.
    pub update_binding: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

/// Quantization parameters of a tensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorAnnotation {
    /// 1: the annotated tensor.
    pub tensor_name: String,
    /// 2: names of the tensors holding its quantization parameters.
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
    /// Encoded fields unknown to this reader, written back verbatim.
    pub unknown_fields: Vec<u8>,
}

impl StringStringEntryProto {
    /// An entry.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> StringStringEntryProto {
        StringStringEntryProto { key: key.into(), value: value.into(), unknown_fields: Vec::new() }
    }
}

impl TensorProto {
    /// Whether the data lives in an external file.
    pub fn is_external(&self) -> bool {
        self.data_location == data_location::EXTERNAL
    }

    /// The value of an `external_data` key (the last one, if repeated).
    pub fn external_value(&self, key: &str) -> Option<&str> {
        self.external_data.iter().rev().find(|e| e.key == key).map(|e| e.value.as_str())
    }
}

impl TypeProto {
    /// A tensor type with a known shape (`None` entries are unknown dimensions).
    pub fn tensor(elem_type: i32, dims: &[Option<i64>]) -> TypeProto {
        let dim = dims
            .iter()
            .map(|d| Dimension { value: d.map_or(DimValue::Unknown, DimValue::Value), ..Default::default() })
            .collect();
        TypeProto {
            value: Some(TypeValue::Tensor(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto { dim, unknown_fields: Vec::new() }),
                unknown_fields: Vec::new(),
            })),
            ..Default::default()
        }
    }
}
