//! Reading and writing numpy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Supported: booleans, integers, IEEE floats (16/32/64), complex, in either byte order (data is
//! converted to native order), C or Fortran order, and unicode strings (`<U`, read as UTF-8).
//! Types numpy has no native code for (bfloat16, float8, int4...) are not representable in `.npy`
//! portably: use ONNX `TensorProto` files for them.

use super::dtype::DType;
use super::tensor::{checked_nbytes, Tensor};
use crate::error::{Error, Result};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
const MAX_HEADER: usize = 1 << 20;

fn descr_of(d: DType) -> Result<&'static str> {
    use DType::*;
    Ok(match d {
        Float32 => "<f4",
        Float64 => "<f8",
        Float16 => "<f2",
        Int8 => "|i1",
        Int16 => "<i2",
        Int32 => "<i4",
        Int64 => "<i8",
        Uint8 => "|u1",
        Uint16 => "<u2",
        Uint32 => "<u4",
        Uint64 => "<u8",
        Bool => "|b1",
        Complex64 => "<c8",
        Complex128 => "<c16",
        other => {
            return Err(Error::UnsupportedDtype(format!(
                "{other} has no portable .npy type code; save it as an ONNX TensorProto (.pb)"
            )))
        }
    })
}

/// Parse a numpy type string like `<f4`, `|b1`, `>i8`, `<U7` into (dtype, big_endian, unicode chars).
fn parse_descr(s: &str) -> Result<(DType, bool, usize)> {
    let bad = || Error::UnsupportedDtype(format!("unsupported .npy dtype descr '{s}'"));
    if s.len() < 2 {
        return Err(bad());
    }
    let (order, rest) = s.split_at(1);
    let big = match order {
        ">" => true,
        "<" | "|" | "=" => false,
        _ => return Err(bad()),
    };
    let (kind, size) = rest.split_at(1);
    let size: usize = size.parse().map_err(|_| bad())?;
    use DType::*;
    let d = match (kind, size) {
        ("f", 2) => Float16,
        ("f", 4) => Float32,
        ("f", 8) => Float64,
        ("i", 1) => Int8,
        ("i", 2) => Int16,
        ("i", 4) => Int32,
        ("i", 8) => Int64,
        ("u", 1) => Uint8,
        ("u", 2) => Uint16,
        ("u", 4) => Uint32,
        ("u", 8) => Uint64,
        ("b", 1) => Bool,
        ("c", 8) => Complex64,
        ("c", 16) => Complex128,
        ("U", n) => return Ok((String, big, n)),
        _ => return Err(bad()),
    };
    Ok((d, big, 0))
}

/// Extract the value text after `'key':` in the header dict.
fn header_field<'a>(h: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let i = h
        .find(&pat)
        .ok_or_else(|| Error::InvalidArgument(format!(".npy header lacks '{key}': {h}")))?;
    Ok(h[i + pat.len()..].trim_start())
}

/// Decode a `.npy` file's bytes into a tensor.
pub fn from_npy_bytes(buf: &[u8]) -> Result<Tensor> {
    if buf.len() < 10 || &buf[..6] != MAGIC {
        return Err(Error::InvalidArgument("not a .npy file (magic string missing)".into()));
    }
    let major = buf[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10),
        2 | 3 => {
            if buf.len() < 12 {
                return Err(Error::InvalidArgument(".npy header truncated".into()));
            }
            (u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize, 12)
        }
        v => return Err(Error::VersionMismatch(format!("unsupported .npy format version {v}"))),
    };
    if hlen > MAX_HEADER || hstart + hlen > buf.len() {
        return Err(Error::InvalidArgument(format!(".npy header length {hlen} exceeds the file")));
    }
    let header = std::str::from_utf8(&buf[hstart..hstart + hlen])
        .map_err(|_| Error::InvalidArgument(".npy header is not text".into()))?;
    let descr_v = header_field(header, "descr")?;
    if !descr_v.starts_with('\'') {
        return Err(Error::UnsupportedDtype(format!(
            "structured .npy dtypes are not supported (descr {})",
            descr_v.split('}').next().unwrap_or("")
        )));
    }
    let descr = descr_v[1..].split('\'').next().unwrap_or("");
    let fortran = header_field(header, "fortran_order")?.starts_with("True");
    let shape_v = header_field(header, "shape")?;
    let shape_txt = shape_v
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| Error::InvalidArgument(format!(".npy shape is malformed: {shape_v}")))?;
    let mut shape = Vec::new();
    for part in shape_txt.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d: usize = part
            .trim_end_matches('L')
            .parse()
            .map_err(|_| Error::InvalidArgument(format!(".npy shape has a bad dimension '{part}'")))?;
        shape.push(d);
    }
    let (dtype, big, uchars) = parse_descr(descr)?;
    let data = &buf[hstart + hlen..];
    if dtype == DType::String {
        let n = super::tensor::checked_numel(&shape)?;
        let need = n.checked_mul(uchars * 4).ok_or_else(|| Error::LimitExceeded("npy too large".into()))?;
        if data.len() < need {
            return Err(Error::InvalidArgument(format!(".npy data is {} bytes, {need} expected", data.len())));
        }
        let mut strs = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = String::new();
            for c in 0..uchars {
                let o = (i * uchars + c) * 4;
                let b = [data[o], data[o + 1], data[o + 2], data[o + 3]];
                let cp = if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
                if cp == 0 {
                    break;
                }
                s.push(char::from_u32(cp).ok_or_else(|| Error::InvalidArgument(format!("bad code point {cp}")))?);
            }
            strs.push(s.into_bytes());
        }
        let t = Tensor::from_strings(&shape, strs)?;
        return if fortran { transpose_fortran(&t) } else { Ok(t) };
    }
    let nbytes = checked_nbytes(dtype, &shape)?;
    if data.len() < nbytes {
        return Err(Error::InvalidArgument(format!(
            ".npy data is truncated: {} bytes, {nbytes} expected for {dtype} {shape:?}",
            data.len()
        )));
    }
    let mut t = Tensor::from_bytes(dtype, &shape, &data[..nbytes])?;
    if big {
        let elem = match dtype {
            DType::Complex64 => 4,
            DType::Complex128 => 8,
            d => d.size(),
        };
        if elem > 1 {
            for chunk in t.make_mut_bytes()?.chunks_mut(elem) {
                chunk.reverse();
            }
        }
    }
    if fortran {
        t = transpose_fortran(&t)?;
    }
    Ok(t)
}

/// Data stored column-major: the reversed shape is row-major; transpose it back.
fn transpose_fortran(t: &Tensor) -> Result<Tensor> {
    let shape = t.shape().to_vec();
    let r = shape.len();
    if r < 2 {
        return Ok(t.clone());
    }
    let n = t.len();
    let mut strides = vec![1usize; r]; // column-major strides of `shape`
    for i in 1..r {
        strides[i] = strides[i - 1] * shape[i - 1];
    }
    let mut order = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        order.push(idx.iter().zip(&strides).map(|(a, b)| a * b).sum::<usize>());
        for a in (0..r).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    if t.dtype() == DType::String {
        let s = t.strings()?;
        return Tensor::from_strings(&shape, order.iter().map(|&o| s[o].clone()).collect());
    }
    let e = t.dtype().size();
    let src = t.bytes()?;
    let mut out = Vec::with_capacity(src.len());
    for &o in &order {
        out.extend_from_slice(&src[o * e..o * e + e]);
    }
    Tensor::from_bytes(t.dtype(), &shape, &out)
}

/// Encode a tensor as `.npy` bytes (format 1.0, or 2.0 for very long headers).
pub fn to_npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let (descr, payload): (String, Vec<u8>) = if t.dtype() == DType::String {
        let strs: Vec<String> = t
            .strings()?
            .iter()
            .map(|b| String::from_utf8(b.clone()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::UnsupportedDtype("string tensor holds non-UTF-8 bytes; .npy needs text".into()))?;
        let width = strs.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
        let mut p = Vec::with_capacity(strs.len() * width * 4);
        for s in &strs {
            let mut k = 0;
            for c in s.chars() {
                p.extend_from_slice(&(c as u32).to_le_bytes());
                k += 1;
            }
            p.resize(p.len() + (width - k) * 4, 0);
        }
        (format!("<U{width}"), p)
    } else {
        (descr_of(t.dtype())?.to_string(), t.bytes()?.to_vec())
    };
    let shape_txt = match t.shape().len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape()[0]),
        _ => format!("({})", t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let v1 = header.len() + 11 < 65536;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    while prefix + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + payload.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Read a `.npy` file.
pub fn load_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("cannot read '{}': {e}", path.display())))?;
    from_npy_bytes(&bytes).map_err(|e| e.context(format!("'{}'", path.display())))
}

/// Write a `.npy` file.
pub fn save_npy(t: &Tensor, path: &Path) -> Result<()> {
    let bytes = to_npy_bytes(t)?;
    std::fs::write(path, bytes).map_err(|e| Error::Io(format!("cannot write '{}': {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Tensor::from_slice(&[2, 3], &[1i32, 2, 3, 4, 5, 6]).unwrap();
        let b = to_npy_bytes(&t).unwrap();
        assert_eq!(b.len() % 64, 24 % 64); // header padded to 64, then 24 bytes of data
        let back = from_npy_bytes(&b).unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back.as_slice::<i32>().unwrap(), t.as_slice::<i32>().unwrap());
        let s = Tensor::from_strings(&[2], vec![b"ab".to_vec(), "é".as_bytes().to_vec()]).unwrap();
        let back = from_npy_bytes(&to_npy_bytes(&s).unwrap()).unwrap();
        assert_eq!(back.strings().unwrap(), s.strings().unwrap());
        let sc = Tensor::scalar(2.5f64);
        assert_eq!(from_npy_bytes(&to_npy_bytes(&sc).unwrap()).unwrap().as_slice::<f64>().unwrap(), &[2.5]);
    }

    #[test]
    fn big_endian_and_fortran() {
        let mut b = MAGIC.to_vec();
        let h = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 2), }\n";
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for v in [1i16, 3, 2, 4] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let t = from_npy_bytes(&b).unwrap();
        assert_eq!(t.as_slice::<i16>().unwrap(), &[1, 2, 3, 4]);
    }

    #[test]
    fn malformed() {
        assert!(from_npy_bytes(b"hello").is_err());
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0, 0xff, 0xff]);
        assert!(from_npy_bytes(&b).is_err());
        let bad = Tensor::zeros(DType::BFloat16, &[1]).unwrap();
        assert!(matches!(to_npy_bytes(&bad), Err(Error::UnsupportedDtype(_))));
    }
}
