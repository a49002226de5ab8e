//! Decoding ONNX messages from protobuf bytes.
//!
//! Field numbers are those of `onnx.proto`. A field may appear several times: for singular fields
//! the last value wins (a repeated sub-message replaces rather than merges); repeated fields
//! append. A known field with the wrong wire type is an error naming it; unknown fields are kept
//! in `unknown_fields`.

use super::bytes::ModelBytes;
use super::proto::*;
use super::wire::{DResult, Field, MessageDesc, Reader};
use crate::error::Result;
use std::sync::Arc;

/// Decode a `ModelProto` from `bytes`. `raw_data` of tensors borrows from `bytes` (no copy).
/// The result has no `base_dir`.
pub fn decode_model(bytes: Arc<ModelBytes>) -> Result<ModelProto> {
    let mut r = Reader::new(&bytes);
    Ok(model(&mut r)?)
}

/// Decode a standalone `TensorProto` (the format of the ONNX test suite's `input_0.pb` files).
/// `raw_data` borrows from `bytes`.
pub fn decode_tensor(bytes: Arc<ModelBytes>) -> Result<TensorProto> {
    let mut r = Reader::new(&bytes);
    Ok(tensor(&mut r)?)
}

/// Decode a nested message of field `f` and append it to `out`, tagging errors with its index.
fn push<'a, T>(
    r: &mut Reader<'a>,
    f: Field,
    out: &mut Vec<T>,
    decode: impl FnOnce(&mut Reader<'a>) -> DResult<T>,
) -> DResult<()> {
    let index = out.len();
    out.push(r.message(f, decode).map_err(|e| e.at_index(index))?);
    Ok(())
}

const MODEL: MessageDesc = MessageDesc {
    name: "ModelProto",
    fields: &[
        (1, "ir_version"),
        (2, "producer_name"),
        (3, "producer_version"),
        (4, "domain"),
        (5, "model_version"),
        (6, "doc_string"),
        (7, "graph"),
        (8, "opset_import"),
        (14, "metadata_props"),
        (20, "training_info"),
        (25, "functions"),
    ],
};

fn model(r: &mut Reader) -> DResult<ModelProto> {
    let mut m = ModelProto::default();
    r.fields(&MODEL, |r, f| {
        match f.number {
            1 => m.ir_version = r.int64(f)?,
            2 => m.producer_name = r.string(f)?,
            3 => m.producer_version = r.string(f)?,
            4 => m.domain = r.string(f)?,
            5 => m.model_version = r.int64(f)?,
            6 => m.doc_string = r.string(f)?,
            7 => m.graph = Some(r.message(f, graph)?),
            8 => push(r, f, &mut m.opset_import, opset_id)?,
            14 => push(r, f, &mut m.metadata_props, string_entry)?,
            20 => push(r, f, &mut m.training_info, training_info)?,
            25 => push(r, f, &mut m.functions, function)?,
            _ => r.unknown(f, &mut m.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(MODEL.name, ""))?;
    Ok(m)
}

const GRAPH: MessageDesc = MessageDesc {
    name: "GraphProto",
    fields: &[
        (1, "node"),
        (2, "name"),
        (5, "initializer"),
        (10, "doc_string"),
        (11, "input"),
        (12, "output"),
        (13, "value_info"),
        (14, "quantization_annotation"),
        (15, "sparse_initializer"),
        (16, "metadata_props"),
    ],
};

fn graph(r: &mut Reader) -> DResult<GraphProto> {
    let mut g = GraphProto::default();
    let res = r.fields(&GRAPH, |r, f| {
        match f.number {
            1 => push(r, f, &mut g.node, node)?,
            2 => g.name = r.string(f)?,
            5 => push(r, f, &mut g.initializer, tensor)?,
            10 => g.doc_string = r.string(f)?,
            11 => push(r, f, &mut g.input, value_info)?,
            12 => push(r, f, &mut g.output, value_info)?,
            13 => push(r, f, &mut g.value_info, value_info)?,
            14 => push(r, f, &mut g.quantization_annotation, tensor_annotation)?,
            15 => push(r, f, &mut g.sparse_initializer, sparse_tensor)?,
            16 => push(r, f, &mut g.metadata_props, string_entry)?,
            _ => r.unknown(f, &mut g.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(GRAPH.name, &g.name))?;
    Ok(g)
}

const NODE: MessageDesc = MessageDesc {
    name: "NodeProto",
    fields: &[
        (1, "input"),
        (2, "output"),
        (3, "name"),
        (4, "op_type"),
        (5, "attribute"),
        (6, "doc_string"),
        (7, "domain"),
        (8, "overload"),
        (9, "metadata_props"),
    ],
};

fn node(r: &mut Reader) -> DResult<NodeProto> {
    let mut n = NodeProto::default();
    let res = r.fields(&NODE, |r, f| {
        match f.number {
            1 => n.input.push(r.string(f)?),
            2 => n.output.push(r.string(f)?),
            3 => n.name = r.string(f)?,
            4 => n.op_type = r.string(f)?,
            5 => push(r, f, &mut n.attribute, attribute)?,
            6 => n.doc_string = r.string(f)?,
            7 => n.domain = r.string(f)?,
            8 => n.overload = r.string(f)?,
            9 => push(r, f, &mut n.metadata_props, string_entry)?,
            _ => r.unknown(f, &mut n.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| {
        if n.name.is_empty() && !n.op_type.is_empty() {
            // Unnamed nodes are described by their operator in errors.
            e.in_message_described(NODE.name, format!("of type {}", n.op_type))
        } else {
            e.in_message(NODE.name, &n.name)
        }
    })?;
    Ok(n)
}

const ATTRIBUTE: MessageDesc = MessageDesc {
    name: "AttributeProto",
    fields: &[
        (1, "name"),
        (2, "f"),
        (3, "i"),
        (4, "s"),
        (5, "t"),
        (6, "g"),
        (7, "floats"),
        (8, "ints"),
        (9, "strings"),
        (10, "tensors"),
        (11, "graphs"),
        (13, "doc_string"),
        (14, "tp"),
        (15, "type_protos"),
        (20, "type"),
        (21, "ref_attr_name"),
        (22, "sparse_tensor"),
        (23, "sparse_tensors"),
    ],
};

fn attribute(r: &mut Reader) -> DResult<AttributeProto> {
    let mut a = AttributeProto::default();
    let res = r.fields(&ATTRIBUTE, |r, f| {
        match f.number {
            1 => a.name = r.string(f)?,
            2 => a.f = r.float(f)?,
            3 => a.i = r.int64(f)?,
            4 => a.s = r.bytes_vec(f)?,
            5 => a.t = Some(Box::new(r.message(f, tensor)?)),
            6 => a.g = Some(Box::new(r.message(f, graph)?)),
            7 => r.repeated_float(f, &mut a.floats)?,
            8 => r.repeated_int64(f, &mut a.ints)?,
            9 => a.strings.push(r.bytes_vec(f)?),
            10 => push(r, f, &mut a.tensors, tensor)?,
            11 => push(r, f, &mut a.graphs, graph)?,
            13 => a.doc_string = r.string(f)?,
            14 => a.tp = Some(Box::new(r.message(f, type_proto)?)),
            15 => push(r, f, &mut a.type_protos, type_proto)?,
            20 => a.r#type = r.int32(f)?,
            21 => a.ref_attr_name = r.string(f)?,
            22 => a.sparse_tensor = Some(Box::new(r.message(f, sparse_tensor)?)),
            23 => push(r, f, &mut a.sparse_tensors, sparse_tensor)?,
            _ => r.unknown(f, &mut a.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(ATTRIBUTE.name, &a.name))?;
    Ok(a)
}

const TENSOR: MessageDesc = MessageDesc {
    name: "TensorProto",
    fields: &[
        (1, "dims"),
        (2, "data_type"),
        (3, "segment"),
        (4, "float_data"),
        (5, "int32_data"),
        (6, "string_data"),
        (7, "int64_data"),
        (8, "name"),
        (9, "raw_data"),
        (10, "double_data"),
        (11, "uint64_data"),
        (12, "doc_string"),
        (13, "external_data"),
        (14, "data_location"),
        (16, "metadata_props"),
    ],
};

fn tensor(r: &mut Reader) -> DResult<TensorProto> {
    let mut t = TensorProto::default();
    let res = r.fields(&TENSOR, |r, f| {
        match f.number {
            1 => r.repeated_int64(f, &mut t.dims)?,
            2 => t.data_type = r.int32(f)?,
            3 => t.segment = Some(r.message(f, segment)?),
            4 => r.repeated_float(f, &mut t.float_data)?,
            5 => r.repeated_int32(f, &mut t.int32_data)?,
            6 => t.string_data.push(r.bytes_vec(f)?),
            7 => r.repeated_int64(f, &mut t.int64_data)?,
            8 => t.name = r.string(f)?,
            9 => t.raw_data = Some(r.bytes_shared(f)?),
            10 => r.repeated_double(f, &mut t.double_data)?,
            11 => r.repeated_uint64(f, &mut t.uint64_data)?,
            12 => t.doc_string = r.string(f)?,
            13 => push(r, f, &mut t.external_data, string_entry)?,
            14 => t.data_location = r.int32(f)?,
            16 => push(r, f, &mut t.metadata_props, string_entry)?,
            _ => r.unknown(f, &mut t.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(TENSOR.name, &t.name))?;
    Ok(t)
}

const SEGMENT: MessageDesc = MessageDesc { name: "Segment", fields: &[(1, "begin"), (2, "end")] };

fn segment(r: &mut Reader) -> DResult<Segment> {
    let mut s = Segment::default();
    r.fields(&SEGMENT, |r, f| {
        match f.number {
            1 => s.begin = r.int64(f)?,
            2 => s.end = r.int64(f)?,
            _ => r.unknown(f, &mut s.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(SEGMENT.name, ""))?;
    Ok(s)
}

const SPARSE_TENSOR: MessageDesc =
    MessageDesc { name: "SparseTensorProto", fields: &[(1, "values"), (2, "indices"), (3, "dims")] };

fn sparse_tensor(r: &mut Reader) -> DResult<SparseTensorProto> {
    let mut s = SparseTensorProto::default();
    let res = r.fields(&SPARSE_TENSOR, |r, f| {
        match f.number {
            1 => s.values = Some(r.message(f, tensor)?),
            2 => s.indices = Some(r.message(f, tensor)?),
            3 => r.repeated_int64(f, &mut s.dims)?,
            _ => r.unknown(f, &mut s.unknown_fields)?,
        }
        Ok(())
    });
    let name = s.values.as_ref().map_or("", |v| v.name.as_str());
    res.map_err(|e| e.in_message(SPARSE_TENSOR.name, name))?;
    Ok(s)
}

const VALUE_INFO: MessageDesc = MessageDesc {
    name: "ValueInfoProto",
    fields: &[(1, "name"), (2, "type"), (3, "doc_string"), (4, "metadata_props")],
};

fn value_info(r: &mut Reader) -> DResult<ValueInfoProto> {
    let mut v = ValueInfoProto::default();
    let res = r.fields(&VALUE_INFO, |r, f| {
        match f.number {
            1 => v.name = r.string(f)?,
            2 => v.r#type = Some(r.message(f, type_proto)?),
            3 => v.doc_string = r.string(f)?,
            4 => push(r, f, &mut v.metadata_props, string_entry)?,
            _ => r.unknown(f, &mut v.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(VALUE_INFO.name, &v.name))?;
    Ok(v)
}

const TYPE: MessageDesc = MessageDesc {
    name: "TypeProto",
    fields: &[
        (1, "tensor_type"),
        (4, "sequence_type"),
        (5, "map_type"),
        (6, "denotation"),
        (7, "opaque_type"),
        (8, "sparse_tensor_type"),
        (9, "optional_type"),
    ],
};

fn type_proto(r: &mut Reader) -> DResult<TypeProto> {
    let mut t = TypeProto::default();
    r.fields(&TYPE, |r, f| {
        match f.number {
            1 => t.value = Some(TypeValue::Tensor(r.message(f, tensor_type)?)),
            4 => t.value = Some(TypeValue::Sequence(r.message(f, sequence_type)?)),
            5 => t.value = Some(TypeValue::Map(r.message(f, map_type)?)),
            6 => t.denotation = r.string(f)?,
            7 => t.value = Some(TypeValue::Opaque(r.message(f, opaque_type)?)),
            8 => t.value = Some(TypeValue::SparseTensor(r.message(f, tensor_type)?)),
            9 => t.value = Some(TypeValue::Optional(r.message(f, optional_type)?)),
            _ => r.unknown(f, &mut t.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(TYPE.name, ""))?;
    Ok(t)
}

const TENSOR_TYPE: MessageDesc = MessageDesc { name: "TypeProto.Tensor", fields: &[(1, "elem_type"), (2, "shape")] };

fn tensor_type(r: &mut Reader) -> DResult<TensorTypeProto> {
    let mut t = TensorTypeProto::default();
    r.fields(&TENSOR_TYPE, |r, f| {
        match f.number {
            1 => t.elem_type = r.int32(f)?,
            2 => t.shape = Some(r.message(f, tensor_shape)?),
            _ => r.unknown(f, &mut t.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(TENSOR_TYPE.name, ""))?;
    Ok(t)
}

const SEQUENCE_TYPE: MessageDesc = MessageDesc { name: "TypeProto.Sequence", fields: &[(1, "elem_type")] };

fn sequence_type(r: &mut Reader) -> DResult<SequenceTypeProto> {
    let mut s = SequenceTypeProto::default();
    r.fields(&SEQUENCE_TYPE, |r, f| {
        match f.number {
            1 => s.elem_type = Some(Box::new(r.message(f, type_proto)?)),
            _ => r.unknown(f, &mut s.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(SEQUENCE_TYPE.name, ""))?;
    Ok(s)
}

const MAP_TYPE: MessageDesc = MessageDesc { name: "TypeProto.Map", fields: &[(1, "key_type"), (2, "value_type")] };

fn map_type(r: &mut Reader) -> DResult<MapTypeProto> {
    let mut m = MapTypeProto::default();
    r.fields(&MAP_TYPE, |r, f| {
        match f.number {
            1 => m.key_type = r.int32(f)?,
            2 => m.value_type = Some(Box::new(r.message(f, type_proto)?)),
            _ => r.unknown(f, &mut m.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(MAP_TYPE.name, ""))?;
    Ok(m)
}

const OPTIONAL_TYPE: MessageDesc = MessageDesc { name: "TypeProto.Optional", fields: &[(1, "elem_type")] };

fn optional_type(r: &mut Reader) -> DResult<OptionalTypeProto> {
    let mut o = OptionalTypeProto::default();
    r.fields(&OPTIONAL_TYPE, |r, f| {
        match f.number {
            1 => o.elem_type = Some(Box::new(r.message(f, type_proto)?)),
            _ => r.unknown(f, &mut o.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(OPTIONAL_TYPE.name, ""))?;
    Ok(o)
}

const OPAQUE_TYPE: MessageDesc = MessageDesc { name: "TypeProto.Opaque", fields: &[(1, "domain"), (2, "name")] };

fn opaque_type(r: &mut Reader) -> DResult<OpaqueTypeProto> {
    let mut o = OpaqueTypeProto::default();
    r.fields(&OPAQUE_TYPE, |r, f| {
        match f.number {
            1 => o.domain = r.string(f)?,
            2 => o.name = r.string(f)?,
            _ => r.unknown(f, &mut o.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(OPAQUE_TYPE.name, ""))?;
    Ok(o)
}

const TENSOR_SHAPE: MessageDesc = MessageDesc { name: "TensorShapeProto", fields: &[(1, "dim")] };

fn tensor_shape(r: &mut Reader) -> DResult<TensorShapeProto> {
    let mut s = TensorShapeProto::default();
    r.fields(&TENSOR_SHAPE, |r, f| {
        match f.number {
            1 => push(r, f, &mut s.dim, dimension)?,
            _ => r.unknown(f, &mut s.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(TENSOR_SHAPE.name, ""))?;
    Ok(s)
}

const DIMENSION: MessageDesc =
    MessageDesc { name: "Dimension", fields: &[(1, "dim_value"), (2, "dim_param"), (3, "denotation")] };

fn dimension(r: &mut Reader) -> DResult<Dimension> {
    let mut d = Dimension::default();
    r.fields(&DIMENSION, |r, f| {
        match f.number {
            1 => d.value = DimValue::Value(r.int64(f)?),
            2 => d.value = DimValue::Param(r.string(f)?),
            3 => d.denotation = r.string(f)?,
            _ => r.unknown(f, &mut d.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(DIMENSION.name, ""))?;
    Ok(d)
}

const OPSET_ID: MessageDesc = MessageDesc { name: "OperatorSetIdProto", fields: &[(1, "domain"), (2, "version")] };

fn opset_id(r: &mut Reader) -> DResult<OperatorSetIdProto> {
    let mut o = OperatorSetIdProto::default();
    r.fields(&OPSET_ID, |r, f| {
        match f.number {
            1 => o.domain = r.string(f)?,
            2 => o.version = r.int64(f)?,
            _ => r.unknown(f, &mut o.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(OPSET_ID.name, ""))?;
    Ok(o)
}

const FUNCTION: MessageDesc = MessageDesc {
    name: "FunctionProto",
    fields: &[
        (1, "name"),
        (4, "input"),
        (5, "output"),
        (6, "attribute"),
        (7, "node"),
        (8, "doc_string"),
        (9, "opset_import"),
        (10, "domain"),
        (11, "attribute_proto"),
        (12, "value_info"),
        (13, "overload"),
        (14, "metadata_props"),
    ],
};

fn function(r: &mut Reader) -> DResult<FunctionProto> {
    let mut p = FunctionProto::default();
    let res = r.fields(&FUNCTION, |r, f| {
        match f.number {
            1 => p.name = r.string(f)?,
            4 => p.input.push(r.string(f)?),
            5 => p.output.push(r.string(f)?),
            6 => p.attribute.push(r.string(f)?),
            7 => push(r, f, &mut p.node, node)?,
            8 => p.doc_string = r.string(f)?,
            9 => push(r, f, &mut p.opset_import, opset_id)?,
            10 => p.domain = r.string(f)?,
            11 => push(r, f, &mut p.attribute_proto, attribute)?,
            12 => push(r, f, &mut p.value_info, value_info)?,
            13 => p.overload = r.string(f)?,
            14 => push(r, f, &mut p.metadata_props, string_entry)?,
            _ => r.unknown(f, &mut p.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(FUNCTION.name, &p.name))?;
    Ok(p)
}

const STRING_ENTRY: MessageDesc = MessageDesc { name: "StringStringEntryProto", fields: &[(1, "key"), (2, "value")] };

fn string_entry(r: &mut Reader) -> DResult<StringStringEntryProto> {
    let mut e = StringStringEntryProto::default();
    let res = r.fields(&STRING_ENTRY, |r, f| {
        match f.number {
            1 => e.key = r.string(f)?,
            2 => e.value = r.string(f)?,
            _ => r.unknown(f, &mut e.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|err| err.in_message(STRING_ENTRY.name, &e.key))?;
    Ok(e)
}

const TRAINING_INFO: MessageDesc = MessageDesc {
    name: "TrainingInfoProto",
    fields: &[(1, "initialization"), (2, "algorithm"), (3, "initialization_binding"), (4, "update_binding")],
};

fn training_info(r: &mut Reader) -> DResult<TrainingInfoProto> {
    let mut t = TrainingInfoProto::default();
    r.fields(&TRAINING_INFO, |r, f| {
        match f.number {
            1 => t.initialization = Some(r.message(f, graph)?),
            2 => t.algorithm = Some(r.message(f, graph)?),
            3 => push(r, f, &mut t.initialization_binding, string_entry)?,
            4 => push(r, f, &mut t.update_binding, string_entry)?,
            _ => r.unknown(f, &mut t.unknown_fields)?,
        }
        Ok(())
    })
    .map_err(|e| e.in_message(TRAINING_INFO.name, ""))?;
    Ok(t)
}

const TENSOR_ANNOTATION: MessageDesc =
    MessageDesc { name: "TensorAnnotation", fields: &[(1, "tensor_name"), (2, "quant_parameter_tensor_names")] };

fn tensor_annotation(r: &mut Reader) -> DResult<TensorAnnotation> {
    let mut a = TensorAnnotation::default();
    let res = r.fields(&TENSOR_ANNOTATION, |r, f| {
        match f.number {
            1 => a.tensor_name = r.string(f)?,
            2 => push(r, f, &mut a.quant_parameter_tensor_names, string_entry)?,
            _ => r.unknown(f, &mut a.unknown_fields)?,
        }
        Ok(())
    });
    res.map_err(|e| e.in_message(TENSOR_ANNOTATION.name, &a.tensor_name))?;
    Ok(a)
}
