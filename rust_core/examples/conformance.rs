//! Developer harness: run ONNX backend test cases (on-disk layout: `model.onnx` plus
//! `test_data_set_N/{input,output}_K.pb`) through the engine and compare outputs.
//!
//! Usage: `cargo run --release --example conformance -- [FILTER] [--dir DIR]... [--verbose]`.
//! Default dirs: `target/onnx-node-tests` (made by `tests/conformance/dump_node_tests.py`) and the
//! `simple`, `pytorch-converted`, `pytorch-operator` folders of the installed `onnx` package.
//! This is a fast inner loop for operator work; the authoritative conformance run is the Python
//! `onnx.backend.test.BackendTest` suite in tests/python.

use pyml_interop::api::{load_model_file, Session, SessionOptions, Value};
use pyml_interop::tensor::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn compare(name: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("{name}: dtype {} != expected {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!("{name}: shape {:?} != expected {:?}", got.shape(), want.shape()));
    }
    if got.dtype() == DType::String {
        return if got.strings().unwrap() == want.strings().unwrap() { Ok(()) } else { Err(format!("{name}: strings differ")) };
    }
    match (got.to_f64_vec(), want.to_f64_vec()) {
        (Ok(g), Ok(w)) => {
            let exact = !got.dtype().is_float();
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                let ok = if exact {
                    a == b
                } else {
                    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * b.abs()
                };
                if !ok {
                    return Err(format!("{name}: element {i}: got {a}, expected {b}"));
                }
            }
            Ok(())
        }
        _ => {
            if got.bytes().unwrap() == want.bytes().unwrap() {
                Ok(())
            } else {
                Err(format!("{name}: bytes differ ({})", got.dtype()))
            }
        }
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let (rtol, atol) = std::fs::read_to_string(dir.join("tolerance.txt"))
        .ok()
        .and_then(|s| {
            let v: Vec<f64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() == 2).then(|| (v[0], v[1]))
        })
        .unwrap_or((1e-3, 1e-7));
    let model = load_model_file(&dir.join("model.onnx")).map_err(|e| format!("load: {e}"))?;
    let session = Session::new(model.clone(), &SessionOptions::default()).map_err(|e| format!("session: {e}"))?;
    let in_names: Vec<String> = model.graph.real_inputs().iter().map(|v| v.name.clone()).collect();
    let out_names: Vec<String> = model.graph.outputs.iter().map(|v| v.name.clone()).collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("test_data_set"))
        .collect();
    sets.sort();
    for set in sets {
        let mut feeds = Vec::new();
        for (i, name) in in_names.iter().enumerate() {
            let p = set.join(format!("input_{i}.pb"));
            if !p.exists() {
                if set.join(format!("input_{i}.sequence.pb")).exists() || set.join(format!("input_{i}.optional.pb")).exists() {
                    return Err(format!("input {i} is a sequence/optional: not supported by this harness"));
                }
                continue;
            }
            let t = pyml_interop::onnx::load_tensor_pb(&p).map_err(|e| format!("input {i}: {e}"))?;
            feeds.push((name.as_str(), Value::Tensor(t)));
        }
        let outs = session.run(&feeds, None).map_err(|e| format!("run: {e}"))?;
        for (i, name) in out_names.iter().enumerate() {
            let p = set.join(format!("output_{i}.pb"));
            if !p.exists() {
                return Err(format!("output {i} ('{name}') is a sequence/optional: not supported by this harness"));
            }
            let want = pyml_interop::onnx::load_tensor_pb(&p).map_err(|e| format!("output {i}: {e}"))?;
            let got = match &outs[i] {
                Value::Tensor(t) => t,
                v => return Err(format!("output '{name}' is a {}", v.kind())),
            };
            compare(name, got, &want, rtol, atol)?;
        }
    }
    Ok(())
}

fn main() {
    let mut filter = String::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dirs.push(PathBuf::from(args.next().expect("--dir DIR"))),
            "--verbose" | "-v" => verbose = true,
            _ => filter = a,
        }
    }
    if dirs.is_empty() {
        dirs.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/onnx-node-tests")));
        if let Ok(out) = std::process::Command::new("python3")
            .args(["-c", "import onnx.backend.test, os; print(os.path.join(os.path.dirname(onnx.backend.test.__file__), 'data'))"])
            .output()
        {
            let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
            for k in ["simple", "pytorch-converted", "pytorch-operator"] {
                dirs.push(Path::new(&base).join(k));
            }
        }
    }
    let mut cases: Vec<PathBuf> = Vec::new();
    for d in &dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.join("model.onnx").exists() && p.file_name().unwrap().to_string_lossy().contains(&filter) {
                    cases.push(p);
                }
            }
        }
    }
    cases.sort();
    let (mut pass, mut fail) = (0, 0);
    let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        let r = std::panic::catch_unwind(|| run_case(c)).unwrap_or_else(|p| {
            Err(format!("PANIC: {}", p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()))
        });
        match r {
            Ok(()) => {
                pass += 1;
                if verbose {
                    println!("PASS {name}");
                }
            }
            Err(e) => {
                fail += 1;
                println!("FAIL {name}: {}", e.chars().take(300).collect::<String>());
                let key = if e.starts_with("session: unsupported operator") { "unsupported operator".to_string() } else { e.split(':').next().unwrap_or("").to_string() };
                by_reason.entry(key).or_default().push(name);
            }
        }
    }
    println!("\nfailures by kind:");
    for (k, v) in &by_reason {
        println!("  {k}: {}", v.len());
    }
    println!("\nconformance: {pass} passed, {fail} failed ({:.1}%)", 100.0 * pass as f64 / (pass + fail).max(1) as f64);
}
