//! Encoding ONNX messages to protobuf bytes.
//!
//! Fields are written in field-number order, as protobuf's own serializers do, with unknown
//! fields last. Repeated scalars declared `[packed = true]` in `onnx.proto` (the `*_data` fields
//! of `TensorProto`) are written packed, the others (`dims`, `ints`, `floats`) unpacked. Singular
//! scalars and strings are written when they differ from their default (an explicitly set empty
//! string, such as `domain: ""`, is not distinguished from an absent one), except:
//! `OperatorSetIdProto.version`, `Dimension.dim_value` and the value field selected by
//! `AttributeProto.type` are always written (the ONNX checker requires the latter present).
//!
//! So a model written by protobuf re-encodes to the same bytes, except where the producer wrote
//! explicit empty strings (onnx.helper's `make_opsetid`, tf2onnx's node domains): those come out
//! two bytes shorter each, with the same meaning.

use super::proto::*;
use super::wire::{encoded_len, Encode, Sink};

/// Encode a model to protobuf bytes. Tensors with external data keep their references (see
/// `inline_external_data` to embed the data instead).
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    encode_message(model)
}

/// Encode a standalone `TensorProto` (the format of the ONNX test suite's `.pb` files).
pub fn encode_tensor(tensor: &TensorProto) -> Vec<u8> {
    encode_message(tensor)
}

fn encode_message<M: Encode>(m: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(m));
    m.encode(&mut out);
    out
}

fn unsigned(v: &[i64]) -> impl Iterator<Item = u64> + Clone + '_ {
    v.iter().map(|x| *x as u64)
}

impl Encode for ModelProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.int64_nonzero(1, self.ir_version);
        s.string_nonempty(2, &self.producer_name);
        s.string_nonempty(3, &self.producer_version);
        s.string_nonempty(4, &self.domain);
        s.int64_nonzero(5, self.model_version);
        s.string_nonempty(6, &self.doc_string);
        if let Some(g) = &self.graph {
            s.message(7, g);
        }
        s.messages(8, &self.opset_import);
        s.messages(14, &self.metadata_props);
        s.messages(20, &self.training_info);
        s.messages(25, &self.functions);
        s.put(&self.unknown_fields);
    }
}

impl Encode for GraphProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.messages(1, &self.node);
        s.string_nonempty(2, &self.name);
        s.messages(5, &self.initializer);
        s.string_nonempty(10, &self.doc_string);
        s.messages(11, &self.input);
        s.messages(12, &self.output);
        s.messages(13, &self.value_info);
        s.messages(14, &self.quantization_annotation);
        s.messages(15, &self.sparse_initializer);
        s.messages(16, &self.metadata_props);
        s.put(&self.unknown_fields);
    }
}

impl Encode for NodeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.strings(1, &self.input);
        s.strings(2, &self.output);
        s.string_nonempty(3, &self.name);
        s.string_nonempty(4, &self.op_type);
        s.messages(5, &self.attribute);
        s.string_nonempty(6, &self.doc_string);
        s.string_nonempty(7, &self.domain);
        s.string_nonempty(8, &self.overload);
        s.messages(9, &self.metadata_props);
        s.put(&self.unknown_fields);
    }
}

impl Encode for AttributeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        // The value field named by `type` is written even when it holds the default, unless the
        // attribute refers to a caller's attribute (then it must have no value).
        let selected = |t: i32| self.r#type == t && self.ref_attr_name.is_empty();
        s.string_nonempty(1, &self.name);
        if selected(attribute_type::FLOAT) || self.f.to_bits() != 0 {
            s.float(2, self.f);
        }
        if selected(attribute_type::INT) || self.i != 0 {
            s.int64(3, self.i);
        }
        if selected(attribute_type::STRING) || !self.s.is_empty() {
            s.bytes(4, &self.s);
        }
        if let Some(t) = &self.t {
            s.message(5, t.as_ref());
        }
        if let Some(g) = &self.g {
            s.message(6, g.as_ref());
        }
        s.floats_unpacked(7, &self.floats);
        s.int64s_unpacked(8, &self.ints);
        for b in &self.strings {
            s.bytes(9, b);
        }
        s.messages(10, &self.tensors);
        s.messages(11, &self.graphs);
        s.string_nonempty(13, &self.doc_string);
        if let Some(tp) = &self.tp {
            s.message(14, tp.as_ref());
        }
        s.messages(15, &self.type_protos);
        s.int64_nonzero(20, i64::from(self.r#type));
        s.string_nonempty(21, &self.ref_attr_name);
        if let Some(st) = &self.sparse_tensor {
            s.message(22, st.as_ref());
        }
        s.messages(23, &self.sparse_tensors);
        s.put(&self.unknown_fields);
    }
}

impl Encode for TensorProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.int64s_unpacked(1, &self.dims);
        s.int64_nonzero(2, i64::from(self.data_type));
        if let Some(seg) = &self.segment {
            s.message(3, seg);
        }
        s.fixed_packed(4, self.float_data.iter().map(|v| v.to_le_bytes()));
        s.varints_packed(5, self.int32_data.iter().map(|v| i64::from(*v) as u64));
        for b in &self.string_data {
            s.bytes(6, b);
        }
        s.varints_packed(7, unsigned(&self.int64_data));
        s.string_nonempty(8, &self.name);
        if let Some(raw) = &self.raw_data {
            s.bytes(9, raw);
        }
        s.fixed_packed(10, self.double_data.iter().map(|v| v.to_le_bytes()));
        s.varints_packed(11, self.uint64_data.iter().copied());
        s.string_nonempty(12, &self.doc_string);
        s.messages(13, &self.external_data);
        s.int64_nonzero(14, i64::from(self.data_location));
        s.messages(16, &self.metadata_props);
        s.put(&self.unknown_fields);
    }
}

impl Encode for Segment {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.int64_nonzero(1, self.begin);
        s.int64_nonzero(2, self.end);
        s.put(&self.unknown_fields);
    }
}

impl Encode for SparseTensorProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        if let Some(v) = &self.values {
            s.message(1, v);
        }
        if let Some(i) = &self.indices {
            s.message(2, i);
        }
        s.int64s_unpacked(3, &self.dims);
        s.put(&self.unknown_fields);
    }
}

impl Encode for ValueInfoProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.name);
        if let Some(t) = &self.r#type {
            s.message(2, t);
        }
        s.string_nonempty(3, &self.doc_string);
        s.messages(4, &self.metadata_props);
        s.put(&self.unknown_fields);
    }
}

impl TypeValue {
    fn field_number(&self) -> u32 {
        match self {
            TypeValue::Tensor(_) => 1,
            TypeValue::Sequence(_) => 4,
            TypeValue::Map(_) => 5,
            TypeValue::Opaque(_) => 7,
            TypeValue::SparseTensor(_) => 8,
            TypeValue::Optional(_) => 9,
        }
    }

    fn encode_field<S: Sink>(&self, s: &mut S) {
        let n = self.field_number();
        match self {
            TypeValue::Tensor(t) | TypeValue::SparseTensor(t) => s.message(n, t),
            TypeValue::Sequence(q) => s.message(n, q),
            TypeValue::Map(m) => s.message(n, m),
            TypeValue::Opaque(o) => s.message(n, o),
            TypeValue::Optional(o) => s.message(n, o),
        }
    }
}

impl Encode for TypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        // The oneof member goes before or after `denotation` (6) by field number.
        let value_first = self.value.as_ref().filter(|v| v.field_number() < 6);
        if let Some(v) = value_first {
            v.encode_field(s);
        }
        s.string_nonempty(6, &self.denotation);
        if let Some(v) = self.value.as_ref().filter(|v| v.field_number() > 6) {
            v.encode_field(s);
        }
        s.put(&self.unknown_fields);
    }
}

impl Encode for TensorTypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.int64_nonzero(1, i64::from(self.elem_type));
        if let Some(shape) = &self.shape {
            s.message(2, shape);
        }
        s.put(&self.unknown_fields);
    }
}

impl Encode for SequenceTypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        if let Some(t) = &self.elem_type {
            s.message(1, t.as_ref());
        }
        s.put(&self.unknown_fields);
    }
}

impl Encode for MapTypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.int64_nonzero(1, i64::from(self.key_type));
        if let Some(t) = &self.value_type {
            s.message(2, t.as_ref());
        }
        s.put(&self.unknown_fields);
    }
}

impl Encode for OptionalTypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        if let Some(t) = &self.elem_type {
            s.message(1, t.as_ref());
        }
        s.put(&self.unknown_fields);
    }
}

impl Encode for OpaqueTypeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.domain);
        s.string_nonempty(2, &self.name);
        s.put(&self.unknown_fields);
    }
}

impl Encode for TensorShapeProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.messages(1, &self.dim);
        s.put(&self.unknown_fields);
    }
}

impl Encode for Dimension {
    fn encode<S: Sink>(&self, s: &mut S) {
        match &self.value {
            DimValue::Value(v) => s.int64(1, *v),
            DimValue::Param(p) => s.bytes(2, p.as_bytes()),
            DimValue::Unknown => {}
        }
        s.string_nonempty(3, &self.denotation);
        s.put(&self.unknown_fields);
    }
}

impl Encode for OperatorSetIdProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.domain);
        s.int64(2, self.version);
        s.put(&self.unknown_fields);
    }
}

impl Encode for FunctionProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.name);
        s.strings(4, &self.input);
        s.strings(5, &self.output);
        s.strings(6, &self.attribute);
        s.messages(7, &self.node);
        s.string_nonempty(8, &self.doc_string);
        s.messages(9, &self.opset_import);
        s.string_nonempty(10, &self.domain);
        s.messages(11, &self.attribute_proto);
        s.messages(12, &self.value_info);
        s.string_nonempty(13, &self.overload);
        s.messages(14, &self.metadata_props);
        s.put(&self.unknown_fields);
    }
}

impl Encode for StringStringEntryProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.key);
        s.string_nonempty(2, &self.value);
        s.put(&self.unknown_fields);
    }
}

impl Encode for TrainingInfoProto {
    fn encode<S: Sink>(&self, s: &mut S) {
        if let Some(g) = &self.initialization {
            s.message(1, g);
        }
        if let Some(g) = &self.algorithm {
            s.message(2, g);
        }
        s.messages(3, &self.initialization_binding);
        s.messages(4, &self.update_binding);
        s.put(&self.unknown_fields);
    }
}

impl Encode for TensorAnnotation {
    fn encode<S: Sink>(&self, s: &mut S) {
        s.string_nonempty(1, &self.tensor_name);
        s.messages(2, &self.quant_parameter_tensor_names);
        s.put(&self.unknown_fields);
    }
}
