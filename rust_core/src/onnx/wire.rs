//! The protobuf wire format: a bounds-checked reader over a shared byte buffer and a writer.
//!
//! The reader never trusts a length before comparing it with the bytes that remain, never
//! allocates from an untrusted count, and limits nesting to [`MAX_DEPTH`] messages, so hostile
//! input yields an error, never a panic or a stack overflow. Errors carry the path of messages and
//! fields being decoded (see [`DecodeError`]).
//!
//! The writer is generic over a [`Sink`]: the same `encode` code either appends bytes to a
//! `Vec<u8>` or only counts them ([`Counter`]), which is how nested messages learn their length
//! prefix before being written.

use super::bytes::{Bytes, ModelBytes};
use crate::error::Error;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Deepest nesting of messages the reader accepts (protobuf's own default recursion limit).
pub const MAX_DEPTH: usize = 100;

/// Longest varint: 10 bytes hold 64 bits.
const MAX_VARINT_LEN: usize = 10;

/// Shared `bytes` values (tensor data) at least this long have their pages released as the
/// decoder passes them: reading a field header of a mapped file maps the page cache around it
/// (up to a 2 MiB large folio: the end of the previous tensor, the start of this one). Smaller
/// values are left to the release after decoding, sparing a system call per small tensor.
const RELEASE_WHILE_DECODING_BYTES: usize = 64 << 10;

/// The wire type of a field, the low 3 bits of its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
    Fixed32 = 5,
}

impl WireType {
    fn describe(self) -> &'static str {
        match self {
            WireType::Varint => "0 (varint)",
            WireType::Fixed64 => "1 (64-bit)",
            WireType::Len => "2 (length-delimited)",
            WireType::Fixed32 => "5 (32-bit)",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One step of the path to where decoding failed.
#[derive(Debug, Clone)]
enum Step {
    /// Inside a message of this type, described by its name (quoted) when it was decoded before
    /// the failure.
    Message(&'static str, String),
    /// Inside this field.
    Field(&'static str),
    /// Inside a field unknown to the reader.
    FieldNumber(u32),
    /// At this index of a repeated field.
    Index(usize),
}

/// A decoding failure: what went wrong, and where (message types, names, fields, indices).
///
/// Converted to [`Error::InvalidModel`] (or [`Error::LimitExceeded`]) with a message such as
/// `ModelProto.graph (GraphProto 'main').node[3] (NodeProto 'conv1').attribute[2]
/// (AttributeProto 'pads'): length 9999999 exceeds remaining 12 bytes`.
#[derive(Debug, Clone)]
pub(crate) struct DecodeError {
    limit: bool,
    message: String,
    /// Innermost step first.
    path: Vec<Step>,
}

/// Result of the decoding functions.
pub(crate) type DResult<T> = std::result::Result<T, DecodeError>;

impl DecodeError {
    /// Malformed input.
    pub(crate) fn invalid(message: impl Into<String>) -> DecodeError {
        DecodeError { limit: false, message: message.into(), path: Vec::new() }
    }

    /// Input beyond a size or depth limit.
    pub(crate) fn limit(message: impl Into<String>) -> DecodeError {
        DecodeError { limit: true, message: message.into(), path: Vec::new() }
    }

    /// Record that the failure happened inside a message of type `ty` named `name` ("" if unknown).
    pub(crate) fn in_message(self, ty: &'static str, name: &str) -> DecodeError {
        let description = if name.is_empty() { String::new() } else { format!("'{}'", name.escape_debug()) };
        self.in_message_described(ty, description)
    }

    /// Record that the failure happened inside a message of type `ty` described by `description`.
    pub(crate) fn in_message_described(mut self, ty: &'static str, description: String) -> DecodeError {
        self.path.push(Step::Message(ty, description));
        self
    }

    /// Record that the failure happened at `index` of a repeated field.
    pub(crate) fn at_index(mut self, index: usize) -> DecodeError {
        self.path.push(Step::Index(index));
        self
    }

    fn in_field(mut self, name: Option<&'static str>, number: u32) -> DecodeError {
        self.path.push(match name {
            Some(n) => Step::Field(n),
            None => Step::FieldNumber(number),
        });
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in self.path.iter().rev() {
            match step {
                Step::Message(ty, description) => {
                    if !first {
                        f.write_str(" (")?;
                    }
                    f.write_str(ty)?;
                    if !description.is_empty() {
                        write!(f, " {description}")?;
                    }
                    if !first {
                        f.write_str(")")?;
                    }
                }
                Step::Field(name) => write!(f, ".{name}")?,
                Step::FieldNumber(n) => write!(f, ".<field {n}>")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if !first {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        if e.limit {
            Error::LimitExceeded(e.to_string())
        } else {
            Error::InvalidModel(e.to_string())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// The field numbers and names of one message type, used to name fields in errors.
pub(crate) struct MessageDesc {
    /// The protobuf message name, e.g. `NodeProto`.
    pub name: &'static str,
    /// `(number, name)` of every field the reader knows.
    pub fields: &'static [(u32, &'static str)],
}

impl MessageDesc {
    fn field_name(&self, number: u32) -> Option<&'static str> {
        self.fields.iter().find(|(n, _)| *n == number).map(|(_, name)| *name)
    }
}

/// A field header: number, wire type, and where its tag starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub number: u32,
    pub wire_type: WireType,
    start: usize,
}

/// A cursor over `buf[pos..end]`, a window of a shared buffer (offsets are absolute, so
/// length-delimited values can be kept as zero-copy [`Bytes`] ranges of the owner).
pub(crate) struct Reader<'a> {
    owner: &'a Arc<ModelBytes>,
    buf: &'a [u8],
    pos: usize,
    end: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole buffer of `owner`, at depth 0.
    pub(crate) fn new(owner: &'a Arc<ModelBytes>) -> Reader<'a> {
        let buf = owner.as_slice();
        Reader { owner, buf, pos: 0, end: buf.len(), depth: 0 }
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn byte(&mut self) -> DResult<u8> {
        if self.pos >= self.end {
            return Err(DecodeError::invalid("unexpected end of data"));
        }
        let b = self.buf.get(self.pos).copied().ok_or_else(|| DecodeError::invalid("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> DResult<Range<usize>> {
        if n > self.remaining() {
            return Err(DecodeError::invalid(format!("length {n} exceeds remaining {} bytes", self.remaining())));
        }
        let r = self.pos..self.pos + n;
        self.pos += n;
        Ok(r)
    }

    fn slice(&self, r: Range<usize>) -> &'a [u8] {
        // Ranges come from `take`, which checked them; `get` keeps this panic-free regardless.
        self.buf.get(r).unwrap_or(&[])
    }

    /// A base-128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> DResult<u64> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte().map_err(|_| DecodeError::invalid("truncated varint"))?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::invalid("varint longer than 10 bytes"))
    }

    fn fixed32_raw(&mut self) -> DResult<u32> {
        let r = self.take(4).map_err(|_| DecodeError::invalid("truncated 32-bit value"))?;
        let mut a = [0u8; 4];
        a.copy_from_slice(self.slice(r));
        Ok(u32::from_le_bytes(a))
    }

    fn fixed64_raw(&mut self) -> DResult<u64> {
        let r = self.take(8).map_err(|_| DecodeError::invalid("truncated 64-bit value"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(self.slice(r));
        Ok(u64::from_le_bytes(a))
    }

    /// The byte range of a length-delimited value (length checked against the remaining bytes).
    fn len_range(&mut self) -> DResult<Range<usize>> {
        let len = self.varint()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len)
    }

    /// The next field header, or `None` at the end of the message.
    fn next_field(&mut self) -> DResult<Option<Field>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let tag = self.varint().map_err(|e| DecodeError::invalid(format!("bad field tag: {}", e.message)))?;
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(DecodeError::invalid(format!("invalid field number {number} at byte {start}")));
        }
        let number = number as u32;
        let wire_type = match tag & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            3 | 4 => {
                return Err(DecodeError::invalid(format!(
                    "field {number} uses the deprecated group encoding, which ONNX never uses"
                )))
            }
            w => return Err(DecodeError::invalid(format!("field {number} has invalid wire type {w}"))),
        };
        Ok(Some(Field { number, wire_type, start }))
    }

    /// Skip the value of `f`.
    fn skip(&mut self, f: Field) -> DResult<()> {
        match f.wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.fixed64_raw().map(drop),
            WireType::Fixed32 => self.fixed32_raw().map(drop),
            WireType::Len => self.len_range().map(drop),
        }
    }

    /// Decode the fields of a message until its end, calling `on_field` for each. Errors raised
    /// while handling a field are tagged with the field's name from `desc`.
    pub(crate) fn fields(
        &mut self,
        desc: &MessageDesc,
        mut on_field: impl FnMut(&mut Reader<'a>, Field) -> DResult<()>,
    ) -> DResult<()> {
        while let Some(f) = self.next_field()? {
            on_field(self, f).map_err(|e| e.in_field(desc.field_name(f.number), f.number))?;
        }
        Ok(())
    }

    /// Skip an unknown field, appending its encoded bytes (tag and value) to `keep`.
    pub(crate) fn unknown(&mut self, f: Field, keep: &mut Vec<u8>) -> DResult<()> {
        self.skip(f)?;
        keep.extend_from_slice(self.slice(f.start..self.pos));
        Ok(())
    }

    fn expect(f: Field, wire_type: WireType) -> DResult<()> {
        if f.wire_type != wire_type {
            return Err(DecodeError::invalid(format!(
                "expected wire type {}, found {}",
                wire_type.describe(),
                f.wire_type.describe()
            )));
        }
        Ok(())
    }

    /// A nested message, decoded by `decode` with a reader limited to its bytes.
    pub(crate) fn message<T>(&mut self, f: Field, decode: impl FnOnce(&mut Reader<'a>) -> DResult<T>) -> DResult<T> {
        Self::expect(f, WireType::Len)?;
        let r = self.len_range()?;
        if self.depth + 1 > MAX_DEPTH {
            return Err(DecodeError::limit(format!("messages are nested deeper than {MAX_DEPTH} levels")));
        }
        let mut sub = Reader { owner: self.owner, buf: self.buf, pos: r.start, end: r.end, depth: self.depth + 1 };
        decode(&mut sub)
    }

    /// A `bytes` value, copied.
    pub(crate) fn bytes_vec(&mut self, f: Field) -> DResult<Vec<u8>> {
        Self::expect(f, WireType::Len)?;
        let r = self.len_range()?;
        Ok(self.slice(r).to_vec())
    }

    /// A `bytes` value as a zero-copy range of the shared buffer. The value itself is not read;
    /// if it is large, the pages of a mapped file that reading around it made resident are
    /// released (see [`ModelBytes::release_pages_around`]; the decoder only reads forward).
    pub(crate) fn bytes_shared(&mut self, f: Field) -> DResult<Bytes> {
        Self::expect(f, WireType::Len)?;
        let r = self.len_range()?;
        if r.len() >= RELEASE_WHILE_DECODING_BYTES {
            self.owner.release_pages_around(r.clone());
        }
        Bytes::from_range(self.owner, r).ok_or_else(|| DecodeError::invalid("byte range outside the buffer"))
    }

    /// A `string` value (must be UTF-8).
    pub(crate) fn string(&mut self, f: Field) -> DResult<String> {
        Self::expect(f, WireType::Len)?;
        let r = self.len_range()?;
        let s = self.slice(r);
        std::str::from_utf8(s).map(str::to_owned).map_err(|e| {
            DecodeError::invalid(format!("string is not valid UTF-8 (at byte {} of {})", e.valid_up_to(), s.len()))
        })
    }

    /// An `int64` (or `uint64`) varint, as two's complement.
    pub(crate) fn int64(&mut self, f: Field) -> DResult<i64> {
        Self::expect(f, WireType::Varint)?;
        Ok(self.varint()? as i64)
    }

    /// An `int32` or enum varint (truncated to 32 bits, as protobuf does).
    pub(crate) fn int32(&mut self, f: Field) -> DResult<i32> {
        Self::expect(f, WireType::Varint)?;
        Ok(self.varint()? as i32)
    }

    /// A `float`.
    pub(crate) fn float(&mut self, f: Field) -> DResult<f32> {
        Self::expect(f, WireType::Fixed32)?;
        Ok(f32::from_bits(self.fixed32_raw()?))
    }

    /// Elements of a repeated varint field, packed or not, converted by `conv`.
    fn repeated_varint<T>(&mut self, f: Field, out: &mut Vec<T>, conv: impl Fn(u64) -> T) -> DResult<()> {
        match f.wire_type {
            WireType::Varint => out.push(conv(self.varint()?)),
            WireType::Len => {
                let r = self.len_range()?;
                // Every varint takes at least one byte, so this reservation is bounded by the input.
                out.reserve(r.len());
                let mut sub = Reader { owner: self.owner, buf: self.buf, pos: r.start, end: r.end, depth: self.depth };
                while sub.remaining() > 0 {
                    out.push(conv(sub.varint()?));
                }
            }
            other => {
                return Err(DecodeError::invalid(format!(
                    "expected wire type 0 (varint) or 2 (packed), found {}",
                    other.describe()
                )))
            }
        }
        Ok(())
    }

    /// Elements of a repeated fixed-size field, packed or not.
    fn repeated_fixed<T, const N: usize>(
        &mut self,
        f: Field,
        wire_type: WireType,
        out: &mut Vec<T>,
        conv: impl Fn([u8; N]) -> T,
    ) -> DResult<()> {
        if f.wire_type == wire_type {
            let r = self.take(N)?;
            let mut a = [0u8; N];
            a.copy_from_slice(self.slice(r));
            out.push(conv(a));
            return Ok(());
        }
        if f.wire_type != WireType::Len {
            return Err(DecodeError::invalid(format!(
                "expected wire type {} or 2 (packed), found {}",
                wire_type.describe(),
                f.wire_type.describe()
            )));
        }
        let r = self.len_range()?;
        let bytes = self.slice(r);
        if !bytes.len().is_multiple_of(N) {
            return Err(DecodeError::invalid(format!(
                "packed {}-byte values have a length of {} bytes, not a multiple of {N}",
                N,
                bytes.len()
            )));
        }
        out.reserve(bytes.len() / N);
        for chunk in bytes.chunks_exact(N) {
            let mut a = [0u8; N];
            a.copy_from_slice(chunk);
            out.push(conv(a));
        }
        Ok(())
    }

    /// Repeated `int64`, packed or not.
    pub(crate) fn repeated_int64(&mut self, f: Field, out: &mut Vec<i64>) -> DResult<()> {
        self.repeated_varint(f, out, |v| v as i64)
    }

    /// Repeated `int32`, packed or not.
    pub(crate) fn repeated_int32(&mut self, f: Field, out: &mut Vec<i32>) -> DResult<()> {
        self.repeated_varint(f, out, |v| v as i32)
    }

    /// Repeated `uint64`, packed or not.
    pub(crate) fn repeated_uint64(&mut self, f: Field, out: &mut Vec<u64>) -> DResult<()> {
        self.repeated_varint(f, out, |v| v)
    }

    /// Repeated `float`, packed or not.
    pub(crate) fn repeated_float(&mut self, f: Field, out: &mut Vec<f32>) -> DResult<()> {
        self.repeated_fixed(f, WireType::Fixed32, out, |a: [u8; 4]| f32::from_le_bytes(a))
    }

    /// Repeated `double`, packed or not.
    pub(crate) fn repeated_double(&mut self, f: Field, out: &mut Vec<f64>) -> DResult<()> {
        self.repeated_fixed(f, WireType::Fixed64, out, |a: [u8; 8]| f64::from_le_bytes(a))
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// A message that can be written in wire format.
pub(crate) trait Encode {
    /// Write the fields of the message (without tag or length prefix).
    fn encode<S: Sink>(&self, s: &mut S);
}

/// Encoded size of a message, without tag or length prefix.
pub(crate) fn encoded_len<M: Encode>(m: &M) -> usize {
    let mut c = Counter(0);
    m.encode(&mut c);
    c.0
}

/// Bytes a varint of `v` takes.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn tag_value(field: u32, wire_type: WireType) -> u64 {
    (u64::from(field) << 3) | wire_type as u64
}

/// Where encoded bytes go. Every field writer is a provided method, so `Vec<u8>` (writing) and
/// [`Counter`] (measuring) share one implementation and always agree on sizes.
pub(crate) trait Sink: Sized {
    /// Append raw bytes.
    fn put(&mut self, bytes: &[u8]);

    /// Write a nested message: tag, length, fields.
    fn message<M: Encode>(&mut self, field: u32, m: &M);

    /// A varint.
    fn varint(&mut self, mut v: u64) {
        let mut buf = [0u8; MAX_VARINT_LEN];
        let mut n = 0;
        while v >= 0x80 {
            buf[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        buf[n] = v as u8;
        self.put(&buf[..=n]);
    }

    /// A field tag.
    fn tag(&mut self, field: u32, wire_type: WireType) {
        self.varint(tag_value(field, wire_type));
    }

    /// An `int64`/`int32`/enum field, always written.
    fn int64(&mut self, field: u32, v: i64) {
        self.tag(field, WireType::Varint);
        self.varint(v as u64);
    }

    /// An `int64`/`int32`/enum field, written unless zero.
    fn int64_nonzero(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.int64(field, v);
        }
    }

    /// A `float` field, always written.
    fn float(&mut self, field: u32, v: f32) {
        self.tag(field, WireType::Fixed32);
        self.put(&v.to_le_bytes());
    }

    /// A `bytes` or `string` field, always written.
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, WireType::Len);
        self.varint(b.len() as u64);
        self.put(b);
    }

    /// A `string` field, written unless empty.
    fn string_nonempty(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A repeated `string` field.
    fn strings(&mut self, field: u32, v: &[String]) {
        for s in v {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A repeated message field.
    fn messages<M: Encode>(&mut self, field: u32, v: &[M]) {
        for m in v {
            self.message(field, m);
        }
    }

    /// A repeated `int64` field, one tag per element (proto2 default, not packed).
    fn int64s_unpacked(&mut self, field: u32, v: &[i64]) {
        for &x in v {
            self.int64(field, x);
        }
    }

    /// A repeated `float` field, one tag per element (proto2 default, not packed).
    fn floats_unpacked(&mut self, field: u32, v: &[f32]) {
        for &x in v {
            self.float(field, x);
        }
    }

    /// A packed repeated varint field (`int64`, `int32`, `uint64`), skipped when empty.
    fn varints_packed(&mut self, field: u32, v: impl Iterator<Item = u64> + Clone) {
        let len: usize = v.clone().map(varint_len).sum();
        if len == 0 {
            return;
        }
        self.tag(field, WireType::Len);
        self.varint(len as u64);
        for x in v {
            self.varint(x);
        }
    }

    /// A packed repeated fixed-size field, skipped when empty.
    fn fixed_packed<const N: usize>(&mut self, field: u32, v: impl ExactSizeIterator<Item = [u8; N]>) {
        if v.len() == 0 {
            return;
        }
        self.tag(field, WireType::Len);
        self.varint((v.len() * N) as u64);
        for x in v {
            self.put(&x);
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn message<M: Encode>(&mut self, field: u32, m: &M) {
        self.tag(field, WireType::Len);
        self.varint(encoded_len(m) as u64);
        m.encode(self);
    }
}

/// A sink that only counts bytes.
pub(crate) struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn varint(&mut self, v: u64) {
        self.0 += varint_len(v);
    }

    fn message<M: Encode>(&mut self, field: u32, m: &M) {
        let len = encoded_len(m);
        self.0 += varint_len(tag_value(field, WireType::Len)) + varint_len(len as u64) + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: MessageDesc = MessageDesc { name: "Test", fields: &[(1, "a"), (2, "b")] };

    fn owner(bytes: &[u8]) -> Arc<ModelBytes> {
        Arc::new(ModelBytes::Owned(bytes.to_vec()))
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX, i64::MIN as u64, -1i64 as u64] {
            let mut out = Vec::new();
            out.varint(v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let o = owner(&out);
            let mut r = Reader::new(&o);
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn overlong_and_truncated_varints_fail() {
        let o = owner(&[0xff; 11]);
        assert!(Reader::new(&o).varint().unwrap_err().message.contains("longer than 10"));
        let o = owner(&[0x80, 0x80]);
        assert!(Reader::new(&o).varint().unwrap_err().message.contains("truncated"));
    }

    #[test]
    fn groups_and_bad_wire_types_fail() {
        for (tag, what) in
            [(0x0bu8, "group"), (0x0c, "group"), (0x0e, "invalid wire type"), (0x0f, "invalid wire type")]
        {
            let o = owner(&[tag, 0]);
            let e = Reader::new(&o).next_field().unwrap_err();
            assert!(e.message.contains(what), "{tag:#x}: {e}");
        }
        let o = owner(&[0x00]);
        assert!(Reader::new(&o).next_field().unwrap_err().message.contains("field number 0"));
    }

    #[test]
    fn absurd_length_fails_before_allocating() {
        let mut buf = Vec::new();
        buf.tag(1, WireType::Len);
        buf.varint(u64::MAX);
        let o = owner(&buf);
        let mut r = Reader::new(&o);
        let e = r.fields(&DESC, |r, f| r.bytes_vec(f).map(drop)).unwrap_err().in_message("Test", "x");
        assert_eq!(e.to_string(), format!("Test 'x'.a: length {} exceeds remaining 0 bytes", usize::MAX));
    }

    #[test]
    fn packed_and_unpacked_repeated_are_both_read() {
        let mut buf = Vec::new();
        buf.int64(1, 5);
        buf.varints_packed(1, [7u64, 300, u64::MAX].into_iter());
        buf.int64(1, -2);
        buf.float(2, 1.5);
        buf.fixed_packed(2, [2.5f32.to_le_bytes(), 3.5f32.to_le_bytes()].into_iter());
        let o = owner(&buf);
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        Reader::new(&o)
            .fields(&DESC, |r, f| match f.number {
                1 => r.repeated_int64(f, &mut ints),
                _ => r.repeated_float(f, &mut floats),
            })
            .unwrap();
        assert_eq!(ints, vec![5, 7, 300, -1, -2]);
        assert_eq!(floats, vec![1.5, 2.5, 3.5]);
    }

    #[test]
    fn wrong_wire_type_is_named() {
        let mut buf = Vec::new();
        buf.int64(2, 5);
        let o = owner(&buf);
        let e = Reader::new(&o).fields(&DESC, |r, f| r.string(f).map(drop)).unwrap_err();
        assert_eq!(e.to_string(), ".b: expected wire type 2 (length-delimited), found 0 (varint)");
        let mut buf = Vec::new();
        buf.bytes(2, &[1, 2, 3]);
        let o = owner(&buf);
        let mut floats = Vec::new();
        let e = Reader::new(&o).fields(&DESC, |r, f| r.repeated_float(f, &mut floats)).unwrap_err();
        assert!(e.to_string().contains("not a multiple of 4"), "{e}");
    }

    #[test]
    fn unknown_fields_are_kept_verbatim() {
        let mut buf = Vec::new();
        buf.int64(9, 1);
        buf.bytes(10, b"xyz");
        buf.float(11, 2.0);
        buf.tag(12, WireType::Fixed64);
        buf.put(&[1; 8]);
        let o = owner(&buf);
        let mut kept = Vec::new();
        Reader::new(&o).fields(&DESC, |r, f| r.unknown(f, &mut kept)).unwrap();
        assert_eq!(kept, buf);
    }

    #[test]
    fn counter_agrees_with_writer() {
        struct M(Vec<i64>, String);
        impl Encode for M {
            fn encode<S: Sink>(&self, s: &mut S) {
                s.varints_packed(1, self.0.iter().map(|v| *v as u64));
                s.string_nonempty(2, &self.1);
            }
        }
        struct Outer(M, M);
        impl Encode for Outer {
            fn encode<S: Sink>(&self, s: &mut S) {
                s.message(1, &self.0);
                s.message(2, &self.1);
            }
        }
        let m = Outer(M(vec![1, -1, 1 << 40], "hello".into()), M(vec![], String::new()));
        let mut v = Vec::new();
        m.encode(&mut v);
        assert_eq!(v.len(), encoded_len(&m));
    }
}
