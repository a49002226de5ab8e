//! Packing of sub-byte element types (4-bit: int4, uint4, float4e2m1; 2-bit: int2, uint2).
//!
//! In memory these elements take one byte each; serialized, elements fill bytes from the least
//! significant bits up: `x0 | x1 << 4` for 4-bit types, `x0 | x1 << 2 | x2 << 4 | x3 << 6` for
//! 2-bit types. Signed types are sign-extended when unpacked.

/// Bytes holding `numel` packed elements of `bits` bits, or `None` on overflow.
pub(crate) fn packed_len(numel: usize, bits: usize) -> Option<usize> {
    Some(numel.checked_mul(bits)?.div_ceil(8))
}

/// Unpack the elements in `packed` into `out`, one byte each (missing bytes read as zero).
pub(crate) fn unpack(packed: &[u8], bits: usize, signed: bool, out: &mut [u8]) {
    let per_byte = 8 / bits;
    let mask = (1u8 << bits) - 1;
    for (i, o) in out.iter_mut().enumerate() {
        let byte = packed.get(i / per_byte).copied().unwrap_or(0);
        let v = (byte >> ((i % per_byte) * bits)) & mask;
        *o = if signed { (((v << (8 - bits)) as i8) >> (8 - bits)) as u8 } else { v };
    }
}

/// Pack one-byte-per-element values (only their low `bits` bits are used).
pub(crate) fn pack(values: &[u8], bits: usize) -> Vec<u8> {
    let per_byte = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let mut out = vec![0u8; values.len().div_ceil(per_byte)];
    for (i, v) in values.iter().enumerate() {
        if let Some(b) = out.get_mut(i / per_byte) {
            *b |= (v & mask) << ((i % per_byte) * bits);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_packs_low_nibble_first_and_sign_extends() {
        let values: Vec<u8> = [-8i8, 7, -1, 0, 3].iter().map(|v| *v as u8).collect();
        let packed = pack(&values, 4);
        assert_eq!(packed, vec![0x78, 0x0f, 0x03]);
        let mut out = vec![0u8; 5];
        unpack(&packed, 4, true, &mut out);
        assert_eq!(out, values);
        unpack(&packed, 4, false, &mut out);
        assert_eq!(out, vec![8, 7, 15, 0, 3]);
    }

    #[test]
    fn int2_packs_four_per_byte() {
        let values: Vec<u8> = [-2i8, -1, 0, 1, 1].iter().map(|v| *v as u8).collect();
        let packed = pack(&values, 2);
        assert_eq!(packed, vec![0b01_00_11_10, 0b01]);
        let mut out = vec![0u8; 5];
        unpack(&packed, 2, true, &mut out);
        assert_eq!(out, values);
        unpack(&packed, 2, false, &mut out);
        assert_eq!(out, vec![2, 3, 0, 1, 1]);
        assert_eq!(packed_len(5, 2), Some(2));
        assert_eq!(packed_len(usize::MAX, 4), None);
    }
}
