//! String operators: StringConcat, StringSplit, StringNormalizer, RegexFullMatch.

use crate::error::{Error, Result};
use crate::ops::common::{broadcast_shapes, broadcast_strides, for_each_broadcast};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

fn strings_in<'a>(
    inputs: &[Option<&'a Value>],
    i: usize,
    op: &str,
) -> Result<(&'a Tensor, &'a [Vec<u8>])> {
    let t = tensor_in(inputs, i, op)?;
    let s = t.strings().map_err(|_| {
        Error::InvalidArgument(format!(
            "{op}: input {i} must be a string tensor, got {}",
            t.dtype()
        ))
    })?;
    Ok((t, s))
}

/// StringConcat: elementwise concatenation with broadcasting.
struct StringConcat;

impl Op for StringConcat {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, xs) = strings_in(inputs, 0, "StringConcat")?;
        let (y, ys) = strings_in(inputs, 1, "StringConcat")?;
        let shape = broadcast_shapes(x.shape(), y.shape())?;
        let sx = broadcast_strides(x.shape(), &shape);
        let sy = broadcast_strides(y.shape(), &shape);
        let n: usize = shape.iter().product();
        let mut out = vec![Vec::new(); n];
        for_each_broadcast(&shape, [&sx, &sy], |k, [i, j]| {
            let mut s = Vec::with_capacity(xs[i].len() + ys[j].len());
            s.extend_from_slice(&xs[i]);
            s.extend_from_slice(&ys[j]);
            out[k] = s;
        });
        Ok(vec![Tensor::from_strings(&shape, out)?.into()])
    }
}

pub fn build_string_concat(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(StringConcat))
}

/// StringSplit: Python `str.split` semantics (whitespace runs without a delimiter).
struct StringSplit {
    delimiter: Vec<u8>,
    maxsplit: Option<usize>,
}

fn split_whitespace(s: &[u8], maxsplit: Option<usize>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = s.len();
    loop {
        while i < n && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            break;
        }
        if maxsplit.is_some_and(|m| out.len() == m) {
            // The rest, as is (Python keeps its trailing whitespace).
            out.push(s[i..].to_vec());
            break;
        }
        let start = i;
        while i < n && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push(s[start..i].to_vec());
    }
    out
}

fn split_on(s: &[u8], d: &[u8], maxsplit: Option<usize>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + d.len() <= s.len() {
        if maxsplit.is_some_and(|m| out.len() == m) {
            break;
        }
        if &s[i..i + d.len()] == d {
            out.push(s[start..i].to_vec());
            i += d.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(s[start..].to_vec());
    out
}

impl Op for StringSplit {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, xs) = strings_in(inputs, 0, "StringSplit")?;
        let parts: Vec<Vec<Vec<u8>>> = xs
            .iter()
            .map(|s| {
                if self.delimiter.is_empty() {
                    split_whitespace(s, self.maxsplit)
                } else {
                    split_on(s, &self.delimiter, self.maxsplit)
                }
            })
            .collect();
        let width = parts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut shape = x.shape().to_vec();
        shape.push(width);
        let mut out = Vec::with_capacity(parts.len() * width);
        let mut counts = Vec::with_capacity(parts.len());
        for p in parts {
            counts.push(p.len() as i64);
            let pad = width - p.len();
            out.extend(p);
            out.extend(std::iter::repeat_n(Vec::new(), pad));
        }
        Ok(vec![
            Tensor::from_strings(&shape, out)?.into(),
            Tensor::from_slice(x.shape(), &counts)?.into(),
        ])
    }
}

pub fn build_string_split(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let delimiter = match ctx.attr("delimiter") {
        Some(crate::graph::ir::AttrValue::String(s)) => s.clone(),
        _ => Vec::new(),
    };
    let maxsplit = match ctx.attr_opt_i("maxsplit")? {
        Some(m) if m < 0 => {
            return Err(ctx.invalid(format!("attribute 'maxsplit' must be >= 0, got {m}")))
        }
        m => m.map(|m| m as usize),
    };
    Ok(Box::new(StringSplit {
        delimiter,
        maxsplit,
    }))
}

#[derive(Clone, Copy, PartialEq)]
enum CaseChange {
    None,
    Lower,
    Upper,
}

/// StringNormalizer: removes stopwords, then changes case, on a [C] or [1, C] tensor.
struct StringNormalizer {
    stopwords: Vec<String>,
    case_sensitive: bool,
    action: CaseChange,
}

impl Op for StringNormalizer {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, xs) = strings_in(inputs, 0, "StringNormalizer")?;
        let row = match x.shape() {
            [_] => false,
            [1, _] => true,
            s => {
                return Err(Error::ShapeMismatch(format!(
                    "StringNormalizer: input must be [C] or [1, C], got {s:?}"
                )))
            }
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        for s in xs {
            let text = String::from_utf8_lossy(s);
            let stop = if self.case_sensitive {
                self.stopwords.iter().any(|w| *w == text)
            } else {
                let l = text.to_lowercase();
                self.stopwords.iter().any(|w| w.to_lowercase() == l)
            };
            if stop {
                continue;
            }
            out.push(match self.action {
                CaseChange::None => s.clone(),
                CaseChange::Lower => text.to_lowercase().into_bytes(),
                CaseChange::Upper => text.to_uppercase().into_bytes(),
            });
        }
        if out.is_empty() {
            out.push(Vec::new());
        }
        let n = out.len();
        let shape = if row { vec![1, n] } else { vec![n] };
        Ok(vec![Tensor::from_strings(&shape, out)?.into()])
    }
}

pub fn build_string_normalizer(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let a = ctx.attr_s("case_change_action", "NONE")?;
    let action = match a.as_str() {
        "NONE" => CaseChange::None,
        "LOWER" => CaseChange::Lower,
        "UPPER" => CaseChange::Upper,
        _ => {
            return Err(ctx.invalid(format!(
                "unknown case_change_action '{a}' (NONE, LOWER, UPPER)"
            )))
        }
    };
    Ok(Box::new(StringNormalizer {
        stopwords: ctx.attr_strings("stopwords")?.unwrap_or_default(),
        case_sensitive: ctx.attr_i("is_case_sensitive", 0)? != 0,
        action,
    }))
}

/// RegexFullMatch: whether each element fully matches the pattern (RE2 syntax).
struct RegexFullMatch {
    re: regex::bytes::Regex,
}

impl Op for RegexFullMatch {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, xs) = strings_in(inputs, 0, "RegexFullMatch")?;
        let flags: Vec<u8> = xs.iter().map(|s| self.re.is_match(s) as u8).collect();
        Ok(vec![
            Tensor::from_bytes(DType::Bool, x.shape(), &flags)?.into()
        ])
    }
}

pub fn build_regex_full_match(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let p = ctx.attr_s("pattern", "")?;
    // Anchored on both ends: a full match.
    let re = regex::bytes::Regex::new(&format!("^(?:{p})$"))
        .map_err(|e| ctx.invalid(format!("invalid pattern '{p}': {e}")))?;
    Ok(Box::new(RegexFullMatch { re }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;

    fn s(v: &str) -> AttrValue {
        AttrValue::String(v.as_bytes().to_vec())
    }

    #[test]
    fn concat_and_split() {
        let r = run1(
            "StringConcat",
            20,
            vec![],
            vec![strs(&[2], &["a", "b"]), strs(&[], &["!"])],
        );
        assert_eq!(texts(&r), vec!["a!", "b!"]);
        let r = run(
            "StringSplit",
            20,
            vec![("delimiter", s("-"))],
            vec![strs(&[2], &["o-n-n--x-", "o-n"])],
            2,
        )
        .unwrap();
        let y = r[0].as_tensor().unwrap();
        assert_eq!(y.shape(), &[2, 6]);
        assert_eq!(
            texts(y),
            vec!["o", "n", "n", "", "x", "", "o", "n", "", "", "", ""]
        );
        assert_eq!(ints(r[1].as_tensor().unwrap()), vec![6, 2]);
        let r = run(
            "StringSplit",
            20,
            vec![("maxsplit", AttrValue::Int(2))],
            vec![strs(&[2], &[" o n n x ", "hello world"])],
            2,
        )
        .unwrap();
        assert_eq!(
            texts(r[0].as_tensor().unwrap()),
            vec!["o", "n", "n x ", "hello", "world", ""]
        );
    }

    #[test]
    fn normalizer_and_regex() {
        let r = run1(
            "StringNormalizer",
            10,
            vec![
                ("stopwords", AttrValue::Strings(vec![b"monday".to_vec()])),
                ("case_change_action", s("UPPER")),
            ],
            vec![strs(&[1, 3], &["Monday", "tuesday", "x"])],
        );
        assert_eq!(r.shape(), &[1, 2]);
        assert_eq!(texts(&r), vec!["TUESDAY", "X"]);
        let r = run1(
            "StringNormalizer",
            10,
            vec![("stopwords", AttrValue::Strings(vec![b"a".to_vec()]))],
            vec![strs(&[1], &["a"])],
        );
        assert_eq!(texts(&r), vec![""]);
        let r = run1(
            "RegexFullMatch",
            20,
            vec![("pattern", s(r"www\.[\w.-]+\.\bcom\b"))],
            vec![strs(
                &[3],
                &["www.google.com", "www.bbc.co.uk", "xwww.a.com"],
            )],
        );
        assert_eq!(r.as_slice::<u8>().unwrap(), &[1, 0, 0]);
        assert!(run(
            "RegexFullMatch",
            20,
            vec![("pattern", s("("))],
            vec![strs(&[1], &["a"])],
            1
        )
        .is_err());
    }
}
