//! Tests of the ONNX reader and writer as a whole: fixtures made by the `onnx` Python package
//! (see `testdata/make_fixtures.py`), hand-made messages, hostile inputs, external data.

use super::wire::{Encode, Sink, WireType};
use super::*;
use crate::tensor::DType;
use std::path::PathBuf;

const SMALL: &[u8] = include_bytes!("testdata/small.onnx");
const TENSORS: &[u8] = include_bytes!("testdata/tensors.onnx");

fn decode(bytes: &[u8]) -> Result<ModelProto> {
    load_model_bytes(bytes.to_vec())
}

fn graph(m: &ModelProto) -> &GraphProto {
    m.graph.as_ref().expect("model has a graph")
}

fn initializer<'a>(m: &'a ModelProto, name: &str) -> &'a TensorProto {
    graph(m).initializer.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no initializer {name}"))
}

/// A deterministic xorshift64* generator for the bounded property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmi_onnx_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Fixtures written by the onnx package
// ---------------------------------------------------------------------------------------------

#[test]
fn small_model_decodes_with_all_its_parts() {
    let m = decode(SMALL).unwrap();
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.producer_name, "make_fixtures.py");
    assert_eq!(m.opset_import.len(), 2);
    assert_eq!((m.opset_import[1].domain.as_str(), m.opset_import[1].version), ("local", 1));
    assert_eq!(m.metadata_props, vec![StringStringEntryProto::new("purpose", "tests")]);
    assert_eq!(m.functions.len(), 1);
    assert_eq!(m.functions[0].name, "Square");
    assert_eq!(m.functions[0].node[0].op_type, "Mul");

    let g = graph(&m);
    assert_eq!(g.name, "small");
    assert_eq!(g.doc_string, "a small test model");
    let conv = &g.node[0];
    assert_eq!((conv.name.as_str(), conv.op_type.as_str()), ("conv1", "Conv"));
    assert_eq!(conv.input, vec!["x", "w", "b"]);
    let pads = conv.attribute.iter().find(|a| a.name == "pads").unwrap();
    assert_eq!((pads.r#type, pads.ints.clone()), (attribute_type::INTS, vec![1, 1, 1, 1]));
    assert_eq!(g.node[1].doc_string, "rectifier");

    let konst = tensor_from_proto(g.node[2].attribute[0].t.as_deref().unwrap(), None).unwrap();
    assert_eq!(konst.to_i64_vec().unwrap(), vec![3]);
    let branch = g.node.iter().find(|n| n.op_type == "If").unwrap();
    let then_g = branch.attribute.iter().find(|a| a.name == "then_branch").unwrap().g.as_deref().unwrap();
    assert_eq!(then_g.node[0].name, "then_add");
    assert_eq!(tensor_from_proto(&then_g.initializer[0], None).unwrap().as_slice::<f32>().unwrap(), &[1.0]);

    let x_type = match &g.input[0].r#type.as_ref().unwrap().value {
        Some(TypeValue::Tensor(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(x_type.elem_type, DType::Float32.code());
    let dims: Vec<_> = x_type.shape.as_ref().unwrap().dim.iter().map(|d| d.value.clone()).collect();
    assert_eq!(dims, vec![DimValue::Param("N".into()), DimValue::Value(1), DimValue::Value(4), DimValue::Value(4)]);

    let w = tensor_from_proto(initializer(&m, "w"), None).unwrap();
    assert_eq!(w.shape(), &[2, 1, 3, 3]);
    assert_eq!(w.as_slice::<f32>().unwrap()[5], 0.5);
    let b = tensor_from_proto(initializer(&m, "b"), None).unwrap();
    assert_eq!(b.as_slice::<f32>().unwrap(), &[0.5, -0.5]);
    let dense = sparse_tensor_to_dense(&g.sparse_initializer[0], None).unwrap();
    assert_eq!(dense.shape(), &[2, 3]);
    assert_eq!(dense.as_slice::<f32>().unwrap(), &[0.0, 1.5, 0.0, 0.0, 2.5, 0.0]);
}

#[test]
fn fixtures_reencode_losslessly() {
    for fixture in [SMALL, TENSORS] {
        let m = decode(fixture).unwrap();
        let bytes = model_to_bytes(&m).unwrap();
        assert_eq!(decode(&bytes).unwrap(), m);
        // Only the explicit empty domains of the opset imports (2 bytes each) are dropped.
        let opsets = m.opset_import.iter().chain(m.functions.iter().flat_map(|f| &f.opset_import));
        let empty_domains = opsets.filter(|o| o.domain.is_empty()).count();
        assert_eq!(bytes.len() + 2 * empty_domains, fixture.len());
    }
}

#[test]
fn every_dtype_reads_the_same_from_raw_data_and_typed_fields() {
    let m = decode(TENSORS).unwrap();
    let mut checked = 0;
    for typed in graph(&m).initializer.iter().filter(|t| t.name.ends_with("_typed")) {
        let t = tensor_from_proto(typed, None).unwrap_or_else(|e| panic!("{}: {e}", typed.name));
        assert_eq!(t.shape(), &[5], "{}", typed.name);
        assert_eq!(t.dtype().code(), typed.data_type);
        if t.dtype() == DType::String {
            continue;
        }
        let raw_name = typed.name.replace("_typed", "_raw");
        let raw_proto = initializer(&m, &raw_name);
        let r = tensor_from_proto(raw_proto, None).unwrap_or_else(|e| panic!("{raw_name}: {e}"));
        assert_eq!(r.dtype(), t.dtype());
        assert_eq!(r.bytes().unwrap(), t.bytes().unwrap(), "{raw_name} and {}", typed.name);
        // Writing packs exactly as numpy_helper.from_array does.
        let written = tensor_to_proto(&r, &raw_name).unwrap();
        assert_eq!(written.raw_data, raw_proto.raw_data, "{raw_name}");
        checked += 1;
    }
    assert_eq!(checked, 25);

    let get = |name: &str| tensor_from_proto(initializer(&m, name), None).unwrap();
    assert_eq!(get("float_raw").as_slice::<f32>().unwrap(), &[0.0, 1.0, -2.0, 0.5, 3.25]);
    assert_eq!(get("double_typed").as_slice::<f64>().unwrap(), &[0.0, 1.0, -2.0, 0.5, 3.25]);
    assert_eq!(get("float16_typed").to_f64_vec().unwrap(), vec![0.0, 1.0, -2.0, 0.5, 3.25]);
    assert_eq!(get("bfloat16_typed").to_f64_vec().unwrap(), vec![0.0, 1.0, -2.0, 0.5, 3.25]);
    assert_eq!(get("int64_typed").to_i64_vec().unwrap(), vec![0, 1, i64::MIN, i64::MAX, -3]);
    assert_eq!(get("int32_typed").to_i64_vec().unwrap(), vec![0, 1, i32::MIN as i64, i32::MAX as i64, -3]);
    assert_eq!(get("int16_typed").to_i64_vec().unwrap(), vec![0, 1, -32768, 32767, -3]);
    assert_eq!(get("uint16_typed").to_i64_vec().unwrap(), vec![0, 1, 65535, 32768, 3]);
    assert_eq!(get("int8_typed").to_i64_vec().unwrap(), vec![0, 1, -128, 127, -3]);
    assert_eq!(get("uint8_typed").to_i64_vec().unwrap(), vec![0, 1, 255, 128, 3]);
    assert_eq!(get("uint32_typed").as_slice::<u32>().unwrap(), &[0, 1, u32::MAX, 1 << 31, 3]);
    assert_eq!(get("uint64_typed").as_slice::<u64>().unwrap(), &[0, 1, u64::MAX, 1 << 63, 3]);
    assert_eq!(get("int4_typed").to_i64_vec().unwrap(), vec![-8, 7, -1, 0, 3]);
    assert_eq!(get("uint4_typed").to_i64_vec().unwrap(), vec![0, 15, 1, 8, 3]);
    assert_eq!(get("int2_typed").to_i64_vec().unwrap(), vec![-2, 1, -1, 0, 1]);
    assert_eq!(get("uint2_typed").to_i64_vec().unwrap(), vec![0, 3, 1, 2, 3]);
    assert_eq!(get("float4e2m1_raw").bytes().unwrap(), &[0x0, 0x2, 0xc, 0x1, 0x5]);
    assert_eq!(get("float8e8m0_typed").bytes().unwrap(), &[127, 128, 126, 129, 137]);
    assert_eq!(get("bool_typed").bytes().unwrap(), &[1, 0, 1, 1, 0]);
    assert_eq!(
        get("complex64_typed").as_slice::<f32>().unwrap(),
        &[0.0, 0.0, 1.0, 2.0, -2.0, -0.5, 0.0, 0.5, 3.25, 0.0]
    );
    let strings = get("string_typed");
    assert_eq!(strings.strings().unwrap()[2], "été".as_bytes());
    assert_eq!(strings.strings().unwrap()[3], vec![b'x'; 200]);
}

// ---------------------------------------------------------------------------------------------
// Hand-made messages
// ---------------------------------------------------------------------------------------------

fn entry(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto::new(k, v)
}

fn full_tensor(name: &str) -> TensorProto {
    TensorProto {
        dims: vec![2, 0, -1],
        data_type: 1,
        segment: Some(Segment { begin: 1, end: 7, unknown_fields: vec![] }),
        float_data: vec![1.5, -0.0, f32::INFINITY],
        int32_data: vec![-1, 0, i32::MAX],
        string_data: vec![b"a".to_vec(), vec![], vec![0xff]],
        int64_data: vec![i64::MIN, 5],
        name: name.into(),
        doc_string: "doc".into(),
        raw_data: Some(Bytes::from_vec(vec![1, 2, 3])),
        external_data: vec![entry("location", "x.bin")],
        data_location: 1,
        double_data: vec![f64::MIN_POSITIVE, 2.0],
        uint64_data: vec![u64::MAX],
        metadata_props: vec![entry("k", "v")],
        unknown_fields: vec![0xa8, 0x1f, 0x07], // field 501, varint 7
    }
}

fn full_type() -> TypeProto {
    let tensor = TypeProto::tensor(1, &[Some(3), None]);
    let seq = TypeProto {
        value: Some(TypeValue::Sequence(SequenceTypeProto {
            elem_type: Some(Box::new(tensor.clone())),
            ..Default::default()
        })),
        denotation: "seq".into(),
        ..Default::default()
    };
    let map = TypeProto {
        value: Some(TypeValue::Map(MapTypeProto {
            key_type: 7,
            value_type: Some(Box::new(seq)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let opt = TypeProto {
        value: Some(TypeValue::Optional(OptionalTypeProto { elem_type: Some(Box::new(map)), ..Default::default() })),
        ..Default::default()
    };
    let mut shape = TensorShapeProto::default();
    shape.dim.push(Dimension {
        value: DimValue::Param("batch".into()),
        denotation: "DATA_BATCH".into(),
        ..Default::default()
    });
    shape.dim.push(Dimension { value: DimValue::Value(0), ..Default::default() });
    shape.dim.push(Dimension::default());
    let sparse = TypeProto {
        value: Some(TypeValue::SparseTensor(TensorTypeProto {
            elem_type: 1,
            shape: Some(shape),
            ..Default::default()
        })),
        ..Default::default()
    };
    let opaque = TypeProto {
        value: Some(TypeValue::Opaque(OpaqueTypeProto { domain: "d".into(), name: "n".into(), ..Default::default() })),
        denotation: "opaque".into(),
        ..Default::default()
    };
    // A tuple of types, nested in a sequence of optional: exercise every variant.
    TypeProto {
        value: Some(TypeValue::Sequence(SequenceTypeProto {
            elem_type: Some(Box::new(TypeProto {
                value: Some(TypeValue::Optional(OptionalTypeProto {
                    elem_type: Some(Box::new(opt)),
                    unknown_fields: vec![0x10, 0x01], // field 2, varint 1
                })),
                ..Default::default()
            })),
            ..Default::default()
        })),
        unknown_fields: [encode_type(&sparse), encode_type(&opaque)].concat(),
        ..Default::default()
    }
}

/// `t` as an unknown field 100 (to carry extra types through `unknown_fields`).
fn encode_type(t: &TypeProto) -> Vec<u8> {
    let mut out = Vec::new();
    out.message(100, t);
    out
}

fn full_model() -> ModelProto {
    let attr = |name: &str, ty: i32| AttributeProto { name: name.into(), r#type: ty, ..Default::default() };
    let sub_graph = GraphProto {
        name: "body".into(),
        node: vec![NodeProto {
            op_type: "Identity".into(),
            input: vec!["a".into()],
            output: vec!["b".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let sparse = SparseTensorProto {
        values: Some(full_tensor("sv")),
        indices: Some(TensorProto { dims: vec![1], data_type: 7, int64_data: vec![0], ..Default::default() }),
        dims: vec![4],
        unknown_fields: vec![],
    };
    let attributes = vec![
        AttributeProto { f: 0.0, ..attr("zero_float", attribute_type::FLOAT) },
        AttributeProto { f: -0.0, ..attr("negative_zero", attribute_type::FLOAT) },
        AttributeProto { i: 0, ..attr("zero_int", attribute_type::INT) },
        AttributeProto { i: -7, ..attr("int", attribute_type::INT) },
        AttributeProto { s: vec![], ..attr("empty_string", attribute_type::STRING) },
        AttributeProto { s: b"same".to_vec(), ..attr("string", attribute_type::STRING) },
        AttributeProto { t: Some(Box::new(full_tensor("t"))), ..attr("tensor", attribute_type::TENSOR) },
        AttributeProto { g: Some(Box::new(sub_graph.clone())), ..attr("graph", attribute_type::GRAPH) },
        AttributeProto {
            sparse_tensor: Some(Box::new(sparse.clone())),
            ..attr("sparse", attribute_type::SPARSE_TENSOR)
        },
        AttributeProto { tp: Some(Box::new(full_type())), ..attr("tp", attribute_type::TYPE_PROTO) },
        AttributeProto { floats: vec![1.0, -2.5], ..attr("floats", attribute_type::FLOATS) },
        AttributeProto { ints: vec![-1, 0, i64::MAX], ..attr("ints", attribute_type::INTS) },
        AttributeProto { strings: vec![b"x".to_vec(), vec![]], ..attr("strings", attribute_type::STRINGS) },
        AttributeProto {
            tensors: vec![full_tensor("t1"), TensorProto::default()],
            ..attr("tensors", attribute_type::TENSORS)
        },
        AttributeProto {
            graphs: vec![sub_graph.clone(), GraphProto::default()],
            ..attr("graphs", attribute_type::GRAPHS)
        },
        AttributeProto {
            sparse_tensors: vec![sparse.clone()],
            ..attr("sparse_tensors", attribute_type::SPARSE_TENSORS)
        },
        AttributeProto {
            type_protos: vec![full_type(), TypeProto::default()],
            ..attr("types", attribute_type::TYPE_PROTOS)
        },
        AttributeProto {
            ref_attr_name: "alpha".into(),
            doc_string: "ref".into(),
            ..attr("ref", attribute_type::FLOAT)
        },
        AttributeProto { unknown_fields: vec![0x98, 0x06, 0x05], ..attr("future", 99) }, // field 99, varint 5
    ];
    let node = NodeProto {
        input: vec!["x".into(), String::new()],
        output: vec!["y".into()],
        name: "n0".into(),
        op_type: "Custom".into(),
        domain: "com.example".into(),
        overload: "v2".into(),
        attribute: attributes,
        doc_string: "node doc".into(),
        metadata_props: vec![entry("a", "b")],
        unknown_fields: vec![0x52, 0x02, 0x0a, 0x00], // field 10 (device_configurations), 2 bytes
    };
    let value_info = ValueInfoProto {
        name: "x".into(),
        r#type: Some(full_type()),
        doc_string: "input".into(),
        metadata_props: vec![entry("m", "n")],
        unknown_fields: vec![],
    };
    let graph = GraphProto {
        node: vec![node.clone(), NodeProto::default()],
        name: "main".into(),
        initializer: vec![full_tensor("w"), TensorProto::default()],
        sparse_initializer: vec![sparse],
        doc_string: "graph doc".into(),
        input: vec![value_info.clone(), ValueInfoProto::default()],
        output: vec![value_info.clone()],
        value_info: vec![value_info.clone()],
        quantization_annotation: vec![TensorAnnotation {
            tensor_name: "w".into(),
            quant_parameter_tensor_names: vec![entry("SCALE_TENSOR", "s")],
            unknown_fields: vec![],
        }],
        metadata_props: vec![entry("g", "h")],
        unknown_fields: vec![0xfa, 0x01, 0x00], // field 31, empty bytes
    };
    ModelProto {
        ir_version: 10,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 21, unknown_fields: vec![] },
            OperatorSetIdProto { domain: "com.example".into(), version: 0, unknown_fields: vec![] },
        ],
        producer_name: "tests".into(),
        producer_version: "1".into(),
        domain: "org.test".into(),
        model_version: -3,
        doc_string: "model doc".into(),
        graph: Some(graph.clone()),
        metadata_props: vec![entry("author", "me"), entry("", "")],
        training_info: vec![TrainingInfoProto {
            initialization: Some(graph.clone()),
            algorithm: None,
            initialization_binding: vec![entry("w", "w0")],
            update_binding: vec![entry("w", "w1")],
            unknown_fields: vec![],
        }],
        functions: vec![FunctionProto {
            name: "F".into(),
            input: vec!["a".into()],
            output: vec!["b".into()],
            attribute: vec!["alpha".into()],
            attribute_proto: vec![AttributeProto { f: 0.5, ..attr("beta", attribute_type::FLOAT) }],
            node: vec![node],
            doc_string: "f".into(),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 18, unknown_fields: vec![] }],
            domain: "com.example".into(),
            overload: "o".into(),
            value_info: vec![value_info],
            metadata_props: vec![entry("f", "g")],
            unknown_fields: vec![],
        }],
        unknown_fields: vec![0xd2, 0x01, 0x01, 0x08], // field 26 (configuration), 1 byte
        base_dir: None,
    }
}

#[test]
fn hand_made_model_round_trips() {
    let m = full_model();
    let bytes = encode_model(&m);
    let back = decode(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(encode_model(&back), bytes);
}

#[test]
fn attribute_values_selected_by_type_are_written_even_when_default() {
    let m = full_model();
    let bytes = encode_model(&m);
    let back = decode(&bytes).unwrap();
    let attrs = &graph(&back).node[0].attribute;
    // The `zero_float` attribute has field 2 (f, tag 0x15) even though f == 0.
    let mut a = Vec::new();
    attrs[0].encode(&mut a);
    assert!(a.windows(5).any(|w| w == [0x15, 0, 0, 0, 0]), "{a:02x?}");
    // A reference attribute carries no value.
    let mut r = Vec::new();
    attrs[17].encode(&mut r);
    assert_eq!(attrs[17].name, "ref");
    assert!(!r.contains(&0x15), "{r:02x?}");
}

#[test]
fn standalone_tensor_round_trips() {
    let t = full_tensor("standalone");
    let bytes = encode_tensor(&t);
    assert_eq!(decode_tensor(Arc::new(ModelBytes::Owned(bytes))).unwrap(), t);
}

#[test]
fn raw_data_is_borrowed_not_copied() {
    let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let t = Tensor::from_slice(&[64], &values).unwrap();
    let mut borrowed = 0;
    // Names of 1 to 4 bytes shift raw_data through every alignment modulo 4.
    for name in ["a", "ab", "abc", "abcd"] {
        let bytes = tensor_to_pb_bytes(&t, name).unwrap();
        let owner = Arc::new(ModelBytes::Owned(bytes));
        let tp = decode_tensor(owner.clone()).unwrap();
        let raw = tp.raw_data.as_ref().unwrap();
        assert!(Arc::ptr_eq(raw.owner(), &owner));
        assert!(owner.as_slice().as_ptr_range().contains(&raw.as_ptr()));
        let back = tensor_from_proto(&tp, None).unwrap();
        assert_eq!(back.as_slice::<f32>().unwrap(), values.as_slice());
        if (raw.as_ptr() as usize).is_multiple_of(4) {
            assert_eq!(back.data_ptr().unwrap(), raw.as_ptr(), "{name}");
            assert!(!back.is_writable());
            borrowed += 1;
        } else {
            assert_ne!(back.data_ptr().unwrap(), raw.as_ptr(), "{name}: misaligned data must be copied");
        }
    }
    assert_eq!(borrowed, 1);
}

// ---------------------------------------------------------------------------------------------
// Storage forms and their errors
// ---------------------------------------------------------------------------------------------

fn proto(dtype: DType, dims: &[i64]) -> TensorProto {
    TensorProto { name: "t".into(), data_type: dtype.code(), dims: dims.to_vec(), ..Default::default() }
}

fn err_of(tp: &TensorProto) -> Error {
    tensor_from_proto(tp, None).unwrap_err()
}

#[test]
fn every_dtype_round_trips_through_raw_data() {
    let mut rng = Rng(7);
    for dtype in crate::tensor::dtype::ALL_DTYPES {
        let shape = [3, 5];
        let t = if dtype == DType::String {
            Tensor::from_strings(&shape, (0..15).map(|i| vec![b'a' + i as u8; i]).collect()).unwrap()
        } else {
            let mut t = Tensor::zeros(dtype, &shape).unwrap();
            for b in t.make_mut_bytes().unwrap() {
                *b = rng.next() as u8;
            }
            // Keep in-memory values canonical: bools 0/1, sub-byte values in range.
            let bits = dtype.packed_bits();
            for b in t.make_mut_bytes().unwrap() {
                *b = match dtype {
                    DType::Bool => *b & 1,
                    _ if bits < 8 && dtype.is_signed_int() => (((*b << (8 - bits)) as i8) >> (8 - bits)) as u8,
                    _ if bits < 8 => *b & ((1 << bits) - 1),
                    _ => *b,
                };
            }
            t
        };
        let bytes = tensor_to_pb_bytes(&t, dtype.name()).unwrap();
        let back = tensor_from_pb_bytes(&bytes).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        assert_eq!((back.dtype(), back.shape()), (dtype, &shape[..]));
        if dtype == DType::String {
            assert_eq!(back.strings().unwrap(), t.strings().unwrap());
        } else {
            assert_eq!(back.bytes().unwrap(), t.bytes().unwrap(), "{dtype}");
        }
    }
}

#[test]
fn typed_fields_are_read() {
    let mut tp = proto(DType::Complex64, &[2]);
    tp.float_data = vec![1.0, 2.0, 3.0, 4.0];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);

    let mut tp = proto(DType::Complex128, &[1]);
    tp.double_data = vec![1.0, -1.0];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().as_slice::<f64>().unwrap(), &[1.0, -1.0]);

    let mut tp = proto(DType::Bool, &[3]);
    tp.int32_data = vec![0, 5, 1];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().bytes().unwrap(), &[0, 1, 1]);

    let mut tp = proto(DType::Uint32, &[2]);
    tp.uint64_data = vec![7, u32::MAX as u64];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().as_slice::<u32>().unwrap(), &[7, u32::MAX]);

    let mut tp = proto(DType::Float16, &[1]);
    tp.int32_data = vec![0x3c00];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().to_f64_vec().unwrap(), vec![1.0]);

    // Bool raw bytes other than 0/1 are normalized.
    let mut tp = proto(DType::Bool, &[3]);
    tp.raw_data = Some(Bytes::from_vec(vec![0, 2, 1]));
    assert_eq!(tensor_from_proto(&tp, None).unwrap().bytes().unwrap(), &[0, 1, 1]);

    // Empty tensors need no data field; scalars have no dims.
    let t = tensor_from_proto(&proto(DType::Float32, &[0, 3]), None).unwrap();
    assert_eq!((t.shape(), t.len()), (&[0, 3][..], 0));
    let mut tp = proto(DType::Int64, &[]);
    tp.int64_data = vec![42];
    assert_eq!(tensor_from_proto(&tp, None).unwrap().to_i64_vec().unwrap(), vec![42]);
}

#[test]
fn inconsistent_tensors_are_refused_with_their_name() {
    let check = |tp: TensorProto, kind: fn(&Error) -> bool, needle: &str| {
        let e = err_of(&tp);
        assert!(kind(&e), "{e}");
        assert!(e.message().contains("'t'"), "{e}");
        assert!(e.message().contains(needle), "{e} does not contain {needle}");
    };
    let invalid = |e: &Error| matches!(e, Error::InvalidModel(_));
    let limit = |e: &Error| matches!(e, Error::LimitExceeded(_));

    let mut tp = proto(DType::Float32, &[3]);
    tp.float_data = vec![1.0, 2.0];
    check(tp, invalid, "float_data has 2 values, but a float tensor of shape [3] needs 3");

    let mut tp = proto(DType::Float32, &[2]);
    tp.raw_data = Some(Bytes::from_vec(vec![0; 7]));
    check(tp, invalid, "raw_data has 7 bytes");

    let mut tp = proto(DType::Int4, &[3]);
    tp.raw_data = Some(Bytes::from_vec(vec![0; 1]));
    check(tp, invalid, "needs 2");

    let mut tp = proto(DType::Float32, &[1]);
    tp.int64_data = vec![1];
    check(tp, invalid, "int64_data cannot hold float elements");

    let mut tp = proto(DType::Float32, &[1]);
    tp.float_data = vec![1.0];
    tp.raw_data = Some(Bytes::from_vec(vec![0; 4]));
    check(tp, invalid, "both raw_data and float_data");

    check(proto(DType::Float32, &[2]), invalid, "no data");
    check(proto(DType::Float32, &[2, -1]), invalid, "negative dimension -1");
    check(proto(DType::Float32, &[i64::MAX, i64::MAX]), limit, "more elements than can be addressed");
    check(proto(DType::Float32, &[1; 65]), limit, "rank 65");

    let mut tp = proto(DType::Float32, &[1 << 40]);
    tp.raw_data = Some(Bytes::from_vec(vec![0; 4]));
    check(tp, invalid, "raw_data has 4 bytes");
    let mut tp = proto(DType::Float32, &[1 << 62]);
    tp.raw_data = Some(Bytes::from_vec(vec![0; 4]));
    check(tp, limit, "too large");

    let mut tp = proto(DType::Float32, &[1]);
    tp.data_type = 0;
    check(tp, invalid, "UNDEFINED");
    let mut tp = proto(DType::Float32, &[1]);
    tp.data_type = 27; // float6e2m3: not supported
    check(tp, |e| matches!(e, Error::UnsupportedDtype(_)), "27");

    let mut tp = proto(DType::Float32, &[1]);
    tp.segment = Some(Segment::default());
    check(tp, invalid, "segmented");

    let mut tp = proto(DType::String, &[1]);
    tp.raw_data = Some(Bytes::from_vec(vec![0]));
    check(tp, invalid, "string_data");

    let mut tp = proto(DType::Float32, &[1]);
    tp.data_location = 1;
    tp.external_data = vec![entry("location", "w.bin")];
    check(tp, invalid, "not loaded from a file");

    let mut tp = proto(DType::Float32, &[1]);
    tp.data_location = 5;
    check(tp, invalid, "data_location 5");
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// Offsets where a top-level field of `bytes` ends: cutting there leaves a valid, shorter message.
fn top_level_field_ends(bytes: &[u8]) -> Vec<usize> {
    let owner = Arc::new(ModelBytes::Owned(bytes.to_vec()));
    let mut r = wire::Reader::new(&owner);
    let desc = wire::MessageDesc { name: "any", fields: &[] };
    let mut ends = vec![0];
    let mut sink = Vec::new();
    r.fields(&desc, |r, f| {
        r.unknown(f, &mut sink)?;
        ends.push(sink.len());
        Ok(())
    })
    .unwrap();
    ends
}

#[test]
fn truncation_at_every_offset_is_an_error_not_a_panic() {
    for fixture in [SMALL, TENSORS] {
        let ends = top_level_field_ends(fixture);
        for cut in 0..fixture.len() {
            let result = decode(&fixture[..cut]);
            assert_eq!(result.is_ok(), ends.contains(&cut), "cut at {cut}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, Error::InvalidModel(_)), "{e}");
            }
        }
    }
}

#[test]
fn truncation_errors_name_the_place() {
    let w = SMALL.windows(2).position(|p| p == b"w\x4a").map(|p| p + 2).expect("raw_data of 'w'");
    let e = decode(&SMALL[..w + 3]).unwrap_err();
    assert!(e.message().starts_with("ModelProto.graph: length"), "the graph's own length is checked first: {e}");
    // Inside a complete graph whose initializer claims more bytes than it has.
    let m = decode(SMALL).unwrap();
    let mut g = graph(&m).clone();
    g.initializer.truncate(1);
    let mut tensor_bytes = Vec::new();
    tensor_bytes.message(5, &g.initializer[0]);
    let mut graph_bytes = Vec::new();
    graph_bytes.put(&tensor_bytes[..tensor_bytes.len() - 10]);
    let mut model_bytes = Vec::new();
    model_bytes.bytes(7, &graph_bytes);
    let e = decode(&model_bytes).unwrap_err();
    assert!(e.message().starts_with("ModelProto.graph (GraphProto).initializer[0]: length"), "{e}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = decode(&bytes);
        let _ = tensor_from_pb_bytes(&bytes);
    }
}

#[test]
fn mutated_models_never_panic() {
    let mut rng = Rng(42);
    let mut decoded = 0;
    for i in 0..3000 {
        let mut bytes = if i % 2 == 0 { SMALL.to_vec() } else { TENSORS.to_vec() };
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = match rng.below(4) {
                0 => rng.next() as u8,
                1 => bytes[at] ^ (1 << rng.below(8)),
                2 => 0xff,
                _ => 0,
            };
        }
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len()));
        }
        let Ok(m) = decode(&bytes) else { continue };
        decoded += 1;
        let mut loader = TensorLoader::new(None);
        if let Some(g) = &m.graph {
            for t in &g.initializer {
                let _ = loader.load(t);
            }
            for s in &g.sparse_initializer {
                let _ = loader.load_sparse(s);
            }
            for a in g.node.iter().flat_map(|n| &n.attribute) {
                if let Some(t) = &a.t {
                    let _ = loader.load(t);
                }
            }
        }
        let again = encode_model(&m);
        assert_eq!(decode(&again).unwrap(), m);
    }
    assert!(decoded > 100, "only {decoded} mutants decoded");
}

#[test]
fn wrong_wire_types_are_named() {
    let mut bytes = Vec::new();
    bytes.int64(7, 1); // graph as a varint
    let e = decode(&bytes).unwrap_err();
    assert_eq!(e.message(), "ModelProto.graph: expected wire type 2 (length-delimited), found 0 (varint)");

    let mut node = Vec::new();
    node.bytes(3, b"conv1");
    node.float(4, 1.0); // op_type as a float
    let mut g = Vec::new();
    g.bytes(1, &node);
    let mut bytes = Vec::new();
    bytes.bytes(7, &g);
    let e = decode(&bytes).unwrap_err();
    assert_eq!(
        e.message(),
        "ModelProto.graph (GraphProto).node[0] (NodeProto 'conv1').op_type: \
         expected wire type 2 (length-delimited), found 5 (32-bit)"
    );

    let mut bytes = Vec::new();
    bytes.tag(7, WireType::Len);
    bytes.varint(2);
    bytes.put(&[0x0b, 0x0c]); // a group inside the graph
    assert!(decode(&bytes).unwrap_err().message().contains("group"));
}

#[test]
fn absurd_lengths_are_refused_with_the_path() {
    // graph { node { name: "conv1" op_type: "Conv" attribute, attribute, attribute { name: "pads"
    // ints: <length 9999999> } } }
    let mut pads = Vec::new();
    pads.bytes(1, b"pads");
    pads.tag(8, WireType::Len);
    pads.varint(9_999_999);
    pads.put(&[1; 12]);
    let mut node = Vec::new();
    node.bytes(3, b"conv1");
    node.bytes(4, b"Conv");
    node.bytes(5, &[0x0a, 0x01, b'a']);
    node.bytes(5, &[0x0a, 0x01, b'b']);
    node.bytes(5, &pads);
    let mut g = Vec::new();
    g.bytes(2, b"main");
    g.bytes(1, &node);
    let mut bytes = Vec::new();
    bytes.bytes(7, &g);
    let e = decode(&bytes).unwrap_err();
    assert_eq!(
        e.message(),
        "ModelProto.graph (GraphProto 'main').node[0] (NodeProto 'conv1').attribute[2] \
         (AttributeProto 'pads').ints: length 9999999 exceeds remaining 12 bytes"
    );

    let mut bytes = Vec::new();
    bytes.tag(6, WireType::Len);
    bytes.varint(u64::MAX);
    assert!(decode(&bytes).unwrap_err().message().starts_with("ModelProto.doc_string: length 18446744073709551615"));

    // Unnamed nodes are described by their operator.
    let mut node = Vec::new();
    node.bytes(4, b"Relu");
    node.bytes(1, &[0xff]);
    let mut g = Vec::new();
    g.bytes(1, &node);
    let mut bytes = Vec::new();
    bytes.bytes(7, &g);
    let e = decode(&bytes).unwrap_err();
    assert!(
        e.message().starts_with("ModelProto.graph (GraphProto).node[0] (NodeProto of type Relu).input: string"),
        "{e}"
    );
}

#[test]
fn nesting_depth_is_limited() {
    // TypeProto { sequence_type { elem_type { sequence_type { ... } } } }, as a graph input type.
    let nest = |levels: usize| {
        let mut inner = Vec::new();
        for _ in 0..levels {
            let mut seq = Vec::new();
            seq.bytes(1, &inner);
            inner.clear();
            inner.bytes(4, &seq);
        }
        let mut vi = Vec::new();
        vi.bytes(2, &inner);
        let mut g = Vec::new();
        g.bytes(11, &vi);
        let mut m = Vec::new();
        m.bytes(7, &g);
        m
    };
    // The innermost TypeProto of nest(n) is at depth 3 + 2n (graph 1, value_info 2, type 3).
    assert!(decode(&nest(48)).is_ok());
    assert!(matches!(decode(&nest(49)), Err(Error::LimitExceeded(_))));
    let e = decode(&nest(5000)).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded(_)), "{e}");
    assert!(e.message().contains("nested deeper than 100"), "{e}");
}

#[test]
fn invalid_utf8_names_are_refused() {
    let mut g = Vec::new();
    g.bytes(2, &[b'a', 0xc3]);
    let mut bytes = Vec::new();
    bytes.bytes(7, &g);
    let e = decode(&bytes).unwrap_err();
    assert!(e.message().contains("GraphProto).name: string is not valid UTF-8"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// External data
// ---------------------------------------------------------------------------------------------

fn external(name: &str, location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut tp = TensorProto { name: name.into(), data_type: 1, dims: vec![2], data_location: 1, ..Default::default() };
    tp.external_data.push(entry("location", location));
    if let Some(o) = offset {
        tp.external_data.push(entry("offset", &o.to_string()));
    }
    if let Some(l) = length {
        tp.external_data.push(entry("length", &l.to_string()));
    }
    tp
}

fn model_with(initializers: Vec<TensorProto>) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { version: 17, ..Default::default() }],
        graph: Some(GraphProto { name: "g".into(), initializer: initializers, ..Default::default() }),
        ..Default::default()
    }
}

#[test]
fn external_data_is_read_and_confined_to_the_model_directory() {
    let root = temp_dir("external");
    let dir = root.join("model");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let floats: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("w.bin"), &floats).unwrap();
    std::fs::write(dir.join("data/v.bin"), &floats).unwrap();
    std::fs::write(root.join("secret.bin"), &floats).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.join("secret.bin"), dir.join("escape.bin")).unwrap();
        std::os::unix::fs::symlink(dir.join("w.bin"), dir.join("alias.bin")).unwrap();
    }
    let base = Some(dir.as_path());
    let load = |tp: &TensorProto| tensor_from_proto(tp, base);

    assert_eq!(
        load(&external("a", "w.bin", None, None).tap_dims(&[4])).unwrap().as_slice::<f32>().unwrap(),
        &[1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(load(&external("b", "w.bin", Some(8), Some(8))).unwrap().as_slice::<f32>().unwrap(), &[3.0, 4.0]);
    assert_eq!(load(&external("c", "data/v.bin", Some(4), Some(8))).unwrap().as_slice::<f32>().unwrap(), &[2.0, 3.0]);
    assert_eq!(load(&external("d", "w.bin", Some(8), None)).unwrap().as_slice::<f32>().unwrap(), &[3.0, 4.0]);

    let refused = |tp: TensorProto, needle: &str| {
        let e = load(&tp).unwrap_err();
        assert!(e.message().contains(&format!("'{}'", tp.name)), "{e}");
        assert!(e.message().contains(needle), "{e} does not contain {needle}");
        e
    };
    let abs = root.join("secret.bin").display().to_string();
    let e = refused(external("abs", &abs, None, Some(8)), "absolute paths are not allowed");
    assert!(matches!(e, Error::InvalidModel(_)) && e.message().contains(&abs));
    refused(external("up", "../secret.bin", None, Some(8)), "'..' components are not allowed");
    refused(external("up2", "data/../../secret.bin", None, Some(8)), "'..'");
    #[cfg(unix)]
    {
        refused(external("link", "escape.bin", None, Some(8)), "outside the model directory");
        assert_eq!(
            load(&external("alias", "alias.bin", Some(0), Some(8))).unwrap().as_slice::<f32>().unwrap(),
            &[1.0, 2.0]
        );
    }
    refused(external("big", "w.bin", Some(12), Some(8)), "exceeds the 16 bytes");
    refused(external("far", "w.bin", Some(u64::MAX), Some(8)), "exceeds");
    refused(external("wrap", "w.bin", Some(8), Some(u64::MAX)), "exceeds");
    refused(external("len", "w.bin", Some(0), Some(12)), "raw_data has 12 bytes");
    refused(external("bad", "w.bin", Some(0), None).with_entry("offset", "-4"), "not a non-negative integer");
    let e = refused(external("missing", "nope.bin", None, None), "nope.bin");
    assert!(matches!(e, Error::Io(_)), "{e}");
    let e = refused(external("dir", "data", None, None), "not a regular file");
    assert!(matches!(e, Error::Io(_)), "{e}");
    let mut no_location = external("noloc", "w.bin", None, None);
    no_location.external_data.clear();
    refused(no_location, "no 'location'");

    let _ = std::fs::remove_dir_all(&root);
}

trait TestTensorExt {
    fn tap_dims(self, dims: &[i64]) -> Self;
    fn with_entry(self, k: &str, v: &str) -> Self;
}

impl TestTensorExt for TensorProto {
    fn tap_dims(mut self, dims: &[i64]) -> Self {
        self.dims = dims.to_vec();
        self
    }
    fn with_entry(mut self, k: &str, v: &str) -> Self {
        self.external_data.push(entry(k, v));
        self
    }
}

#[test]
fn models_with_external_data_are_saved_self_contained() {
    let dir = temp_dir("inline");
    let floats: Vec<u8> = [5.0f32, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("w.bin"), [&[0u8; 4096][..], &floats].concat()).unwrap();
    let mut m = model_with(vec![external("w", "w.bin", Some(4096), Some(8))]);
    m.graph.as_mut().unwrap().node.push(NodeProto {
        op_type: "Constant".into(),
        output: vec!["c".into()],
        attribute: vec![AttributeProto {
            name: "value".into(),
            r#type: attribute_type::TENSOR,
            t: Some(Box::new(external("c", "w.bin", Some(4096), Some(8)))),
            ..Default::default()
        }],
        ..Default::default()
    });
    let path = dir.join("model.onnx");
    std::fs::write(&path, encode_model(&m)).unwrap();

    let loaded = load_model_file(&path).unwrap();
    assert_eq!(loaded.base_dir, Some(dir.canonicalize().unwrap()));
    assert!(has_external_data(&loaded));
    let w = tensor_from_proto(initializer(&loaded, "w"), loaded.base_dir.as_deref()).unwrap();
    assert_eq!(w.as_slice::<f32>().unwrap(), &[5.0, 6.0]);

    // From bytes, external data has no directory to be found in.
    let from_bytes = decode(&std::fs::read(&path).unwrap()).unwrap();
    assert!(model_to_bytes(&from_bytes).unwrap_err().message().contains("TensorProto 'w'"));

    let bytes = model_to_bytes(&loaded).unwrap();
    let copy = decode(&bytes).unwrap();
    assert!(!has_external_data(&copy));
    assert_eq!(tensor_from_proto(initializer(&copy, "w"), None).unwrap().as_slice::<f32>().unwrap(), &[5.0, 6.0]);
    let c = graph(&copy).node[0].attribute[0].t.as_deref().unwrap();
    assert_eq!(tensor_from_proto(c, None).unwrap().as_slice::<f32>().unwrap(), &[5.0, 6.0]);

    // Saving over the mapped file itself keeps the loaded model valid.
    save_model_file(&loaded, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let w = tensor_from_proto(initializer(&loaded, "w"), loaded.base_dir.as_deref()).unwrap();
    assert_eq!(w.as_slice::<f32>().unwrap(), &[5.0, 6.0]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_pb_files_round_trip() {
    let dir = temp_dir("pb");
    let path = dir.join("input_0.pb");
    let t = Tensor::from_slice(&[2, 2], &[1i64, -2, 3, i64::MIN]).unwrap();
    save_tensor_pb(&t, "x", &path).unwrap();
    let back = load_tensor_pb(&path).unwrap();
    assert_eq!(back.shape(), &[2, 2]);
    assert_eq!(back.to_i64_vec().unwrap(), vec![1, -2, 3, i64::MIN]);
    let tp = decode_tensor(Arc::new(ModelBytes::map_file(&path).unwrap())).unwrap();
    assert_eq!(tp.name, "x");
    assert!(matches!(load_tensor_pb(&dir.join("absent.pb")), Err(Error::Io(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Memory: copies and resident pages while loading
// ---------------------------------------------------------------------------------------------

/// Counts, per thread, the bytes of allocations of at least [`LARGE`] bytes, so that a test can
/// check how many times large tensor data is copied (other tests' threads do not interfere).
struct CountingAlloc;

const LARGE: usize = 1 << 20;

thread_local! {
    static LARGE_ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note_allocation(size: usize) {
    if size >= LARGE {
        let _ = LARGE_ALLOCATED.try_with(|c| c.set(c.get() + size));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Bytes of large allocations made by this thread so far.
fn large_allocated() -> usize {
    LARGE_ALLOCATED.with(|c| c.get())
}

/// Resident bytes of this process's mappings of `path` (`None` where /proc/self/smaps is absent).
fn resident_bytes_of(path: &std::path::Path) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let path = path.canonicalize().ok()?;
    let mut inside = false;
    let mut total = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            // A mapping header: address range, permissions, offset, device, inode, path.
            inside = line.split_whitespace().nth(5).is_some_and(|p| std::path::Path::new(p) == path);
        } else if inside && first == "Rss:" {
            total += words.next().and_then(|kb| kb.parse::<usize>().ok()).unwrap_or(0) * 1024;
        }
    }
    Some(total)
}

/// A model with a large float initializer whose `raw_data` is misaligned in the file and a
/// smaller one whose `raw_data` is aligned (names are padded until both hold).
fn misaligned_model(big: &[f32], small: &[f32]) -> Vec<u8> {
    for pad_big in 0..4 {
        for pad_small in 0..4 {
            let names = [format!("big{}", "_".repeat(pad_big)), format!("small{}", "_".repeat(pad_small))];
            let tensors = [
                tensor_to_proto(&Tensor::from_slice(&[big.len()], big).unwrap(), &names[0]).unwrap(),
                tensor_to_proto(&Tensor::from_slice(&[small.len()], small).unwrap(), &names[1]).unwrap(),
            ];
            let bytes = model_to_bytes(&model_with(tensors.to_vec())).unwrap();
            let m = decode(&bytes).unwrap();
            let offset = |name: &str| initializer(&m, name).raw_data.as_ref().unwrap().range().start;
            if offset(&names[0]) % 4 != 0 && offset(&names[1]) % 4 == 0 {
                return bytes;
            }
        }
    }
    panic!("no padding gives the wanted alignments");
}

#[test]
fn misaligned_raw_data_is_copied_once_and_its_file_pages_released() {
    let big: Vec<f32> = (0..3 << 20).map(|i| (i % 1013) as f32 * 0.5).collect();
    let small: Vec<f32> = (0..1 << 18).map(|i| -(i as f32)).collect();
    let dir = temp_dir("misaligned");
    let path = dir.join("model.onnx");
    std::fs::write(&path, misaligned_model(&big, &small)).unwrap();

    // Buffers recycled from other tests would hide the allocation being counted.
    crate::tensor::storage::release_idle_buffers();
    let before = large_allocated();
    let model = crate::api::load_model_file(&path).unwrap();
    let copied = large_allocated() - before;
    // Exactly one copy of the misaligned tensor; the aligned one and the protobuf share the file.
    assert_eq!(copied, big.len() * 4, "large allocations while loading");
    if let Some(resident) = resident_bytes_of(&path) {
        // Without releasing, the 12 MiB the copy read would stay resident.
        assert!(resident <= 1 << 20, "{resident} bytes of the model file stay resident after loading");
    }

    let tensor = |name: &str| &model.graph.initializers.iter().find(|(n, _)| n.starts_with(name)).unwrap().1;
    let raw = |name: &str| {
        let g = model.proto.graph.as_ref().unwrap();
        g.initializer.iter().find(|t| t.name.starts_with(name)).unwrap().raw_data.clone().unwrap()
    };
    let (big_t, small_t) = (tensor("big"), tensor("small"));
    let file = raw("big").owner().clone();
    assert!(file.is_mapped());
    let in_file = |p: *const u8| file.as_slice().as_ptr_range().contains(&p);
    assert!(!in_file(big_t.data_ptr().unwrap()), "misaligned data must be copied");
    assert!((big_t.data_ptr().unwrap() as usize).is_multiple_of(crate::tensor::storage::ALIGNMENT));
    assert_eq!(big_t.as_slice::<f32>().unwrap(), big.as_slice());
    assert_eq!(small_t.data_ptr().unwrap(), raw("small").as_ptr(), "aligned data must be borrowed");
    assert_eq!(small_t.as_slice::<f32>().unwrap(), small.as_slice());
    // The released pages read back from the file unchanged (the protobuf still uses them).
    assert!(in_file(raw("big").as_ptr()));
    let le: Vec<u8> = big.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(*raw("big") == *le.as_slice());
    drop(model);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (Unix: elsewhere a mapped file cannot be replaced.)
#[cfg(unix)]
#[test]
fn copies_come_from_the_mapped_file_even_after_its_path_is_replaced() {
    let big: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
    let small = [0.5f32; 16];
    let dir = temp_dir("replaced");
    let path = dir.join("model.onnx");
    std::fs::write(&path, misaligned_model(&big, &small)).unwrap();
    let m = load_model_file(&path).unwrap();
    // Replaced atomically (as `save_model_file` does): the mapping keeps the old file.
    let other = dir.join("other.onnx");
    std::fs::write(&other, misaligned_model(&[-1.0; 1 << 20], &small)).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let tp = graph(&m).initializer.iter().find(|t| t.name.starts_with("big")).unwrap();
    let mut loader = TensorLoader::new(m.base_dir.as_deref());
    let t = loader.load(tp).unwrap();
    assert_ne!(t.data_ptr().unwrap(), tp.raw_data.as_ref().unwrap().as_ptr(), "misaligned data must be copied");
    assert_eq!(t.as_slice::<f32>().unwrap(), big.as_slice());
    loader.release_pages();
    assert_eq!(t.as_slice::<f32>().unwrap(), big.as_slice());
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn typed_fields_are_borrowed_from_the_kept_protobuf() {
    let mut f = proto(DType::Float32, &[2, 2]);
    f.name = "f".into();
    f.float_data = vec![1.5, -2.0, 3.25, 4.0];
    let mut i = proto(DType::Int64, &[3]);
    i.name = "i".into();
    i.int64_data = vec![7, -8, i64::MAX];
    let mut h = proto(DType::Float16, &[1]);
    h.name = "h".into();
    h.int32_data = vec![0x3c00];
    let model = crate::graph::from_proto::model_from_proto(model_with(vec![f, i, h])).unwrap();
    let g = model.proto.graph.as_ref().unwrap();
    let inits = &model.graph.initializers;
    assert_eq!(inits[0].1.data_ptr().unwrap(), g.initializer[0].float_data.as_ptr().cast());
    assert_eq!(inits[0].1.as_slice::<f32>().unwrap(), &[1.5, -2.0, 3.25, 4.0]);
    assert_eq!(inits[1].1.data_ptr().unwrap(), g.initializer[1].int64_data.as_ptr().cast());
    assert_eq!(inits[1].1.to_i64_vec().unwrap(), vec![7, -8, i64::MAX]);
    // Narrower elements are converted.
    assert_eq!(inits[2].1.as_slice::<u16>().unwrap(), &[0x3c00]);
    // The tensors keep the protobuf alive on their own.
    let t = inits[0].1.clone();
    drop(model);
    assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, -2.0, 3.25, 4.0]);
}

// ---------------------------------------------------------------------------------------------
// Real models
// ---------------------------------------------------------------------------------------------

/// Every model of the shared model directory decodes, its tensors convert, and it re-encodes
/// losslessly. Skipped when the directory is absent.
#[test]
fn shared_models_round_trip() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    paths.sort();
    for path in paths {
        let m = load_model_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let g = graph(&m);
        assert!(!g.node.is_empty(), "{}", path.display());
        let mut loader = TensorLoader::new(m.base_dir.as_deref());
        for t in &g.initializer {
            loader.load(t).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let bytes = model_to_bytes(&m).unwrap();
        let again = ModelProto { base_dir: m.base_dir.clone(), ..decode(&bytes).unwrap() };
        assert!(again == m, "{} does not re-encode losslessly", path.display());
    }
}
