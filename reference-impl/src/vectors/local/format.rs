//! The bytes of a segment file: its header and its records, encoded and
//! decoded. Nothing here touches a file; see the parent module for the layout
//! and [`super::recovery`] for what a decoding failure means.

use std::fmt;

use crate::vectors::VectorId;

/// The first bytes of every segment.
const MAGIC: [u8; 8] = *b"TLVECSEG";

/// The only format version this build reads and writes.
const FORMAT_VERSION: u32 = 1;

/// Bytes in a segment header: magic, version, dimension, checksum.
pub(crate) const HEADER_LEN: u64 = 20;

/// Bytes of a record around its body: the length field and the checksum.
const RECORD_FRAME_LEN: usize = 8;

/// Bytes of a record body before the vector: the kind and the id.
const BODY_FIXED_LEN: usize = 9;

const KIND_UPSERT: u8 = 1;
const KIND_DELETE: u8 = 2;

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Record {
    /// `id` now holds `vector`.
    Upsert {
        /// The vector's id.
        id: VectorId,
        /// Its components.
        vector: Vec<f32>,
    },
    /// `id` holds nothing.
    Delete {
        /// The vector's id.
        id: VectorId,
    },
}

/// The header every segment starts with.
pub(crate) fn encode_header(dimension: u32) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&dimension.to_le_bytes());
    let crc = crc32fast::hash(&out[0..16]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Why a header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short(usize),
    /// The first eight bytes are not the magic: not a segment of this store.
    BadMagic,
    /// The checksum does not match the header's bytes.
    BadChecksum,
    /// A format version this build does not know.
    UnknownVersion(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short(len) => write!(f, "header is {len} bytes, needs {HEADER_LEN}"),
            HeaderError::BadMagic => f.write_str("not a vector segment (wrong magic)"),
            HeaderError::BadChecksum => f.write_str("header checksum mismatch"),
            HeaderError::UnknownVersion(v) => {
                write!(f, "format version {v}; this build reads version {FORMAT_VERSION}")
            }
        }
    }
}

/// The dimension a segment's header declares.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<u32, HeaderError> {
    if !bytes.starts_with(&MAGIC) && !MAGIC.starts_with(bytes) {
        return Err(HeaderError::BadMagic);
    }
    let Some(header) = bytes.get(..HEADER_LEN as usize) else {
        return Err(HeaderError::Short(bytes.len()));
    };
    if crc32fast::hash(&header[0..16]) != le_u32(&header[16..20]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u32(&header[8..12]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnknownVersion(version));
    }
    Ok(le_u32(&header[12..16]))
}

/// The encoded size of an upsert record of `dimension` components.
pub(crate) fn upsert_len(dimension: usize) -> usize {
    RECORD_FRAME_LEN + BODY_FIXED_LEN + 4 * dimension
}

/// Appends an upsert record to `out`.
pub(crate) fn encode_upsert(id: VectorId, vector: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = BODY_FIXED_LEN + 4 * vector.len();
    out.extend_from_slice(&body_len_field(body_len).to_le_bytes());
    out.push(KIND_UPSERT);
    out.extend_from_slice(&id.to_le_bytes());
    for component in vector {
        out.extend_from_slice(&component.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Appends a delete record (a tombstone) to `out`.
pub(crate) fn encode_delete(id: VectorId, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&body_len_field(BODY_FIXED_LEN).to_le_bytes());
    out.push(KIND_DELETE);
    out.extend_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The length field for a body of `len` bytes. The store caps the dimension
/// (see `MAX_DIMENSION`) so that every body length fits.
fn body_len_field(len: usize) -> u32 {
    u32::try_from(len).expect("the dimension cap keeps record bodies under 4 GiB")
}

/// Why the bytes at some offset are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The bytes end before the record does.
    Short {
        /// Bytes present.
        have: usize,
        /// Bytes the record needs (at least the length field if that is cut).
        need: usize,
    },
    /// The length field is neither a delete's nor an upsert's.
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum,
    /// The kind byte is unknown or disagrees with the length.
    BadKind(u8),
    /// A checksummed upsert holds a NaN or an infinity (never written by this
    /// store).
    NonFinite,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short { have, need } => write!(f, "record cut short: {have} of {need} bytes"),
            RecordError::BadLength(len) => write!(f, "impossible record length {len}"),
            RecordError::BadChecksum => f.write_str("record checksum mismatch"),
            RecordError::BadKind(kind) => write!(f, "unknown record kind {kind}"),
            RecordError::NonFinite => f.write_str("record holds a non-finite component"),
        }
    }
}

/// Whether decoding checks each record's CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checksums {
    /// Every record's CRC is checked: a record whose bytes changed is refused.
    Verify,
    /// KNOWN BAD (`Flaw::TrustsIndex`): the CRC is not looked at, so a
    /// damaged record decodes to whatever its bytes now say.
    Trust,
}

/// Decodes the record at the start of `bytes`, checking its CRC (or, known
/// bad, not); returns it and its encoded size.
pub(crate) fn decode_record(
    bytes: &[u8],
    dimension: usize,
    checksums: Checksums,
) -> Result<(Record, usize), RecordError> {
    let Some(len_field) = bytes.get(..4) else {
        return Err(RecordError::Short {
            have: bytes.len(),
            need: 4,
        });
    };
    let body_len = le_u32(len_field);
    let upsert_body = BODY_FIXED_LEN + 4 * dimension;
    let body = usize::try_from(body_len).unwrap_or(usize::MAX);
    if body != BODY_FIXED_LEN && body != upsert_body {
        return Err(RecordError::BadLength(body_len));
    }
    let total = RECORD_FRAME_LEN + body;
    let Some(record) = bytes.get(..total) else {
        return Err(RecordError::Short {
            have: bytes.len(),
            need: total,
        });
    };
    let (framed, crc) = record.split_at(total - 4);
    if checksums == Checksums::Verify && crc32fast::hash(framed) != le_u32(crc) {
        return Err(RecordError::BadChecksum);
    }
    let kind = framed[4];
    let id = u64::from_le_bytes(framed[5..13].try_into().expect("eight bytes"));
    let decoded = match kind {
        KIND_DELETE if body == BODY_FIXED_LEN => Record::Delete { id },
        KIND_UPSERT if body == upsert_body => {
            let vector: Vec<f32> = framed[13..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("four bytes")))
                .collect();
            if !vector.iter().all(|x| x.is_finite()) {
                return Err(RecordError::NonFinite);
            }
            Record::Upsert { id, vector }
        }
        other => return Err(RecordError::BadKind(other)),
    };
    Ok((decoded, total))
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut bytes = Vec::new();
        encode_upsert(7, &[1.0, -2.5, 0.0], &mut bytes);
        encode_delete(9, &mut bytes);
        let (first, used) = decode_record(&bytes, 3, Checksums::Verify).expect("upsert");
        assert_eq!(used, upsert_len(3));
        assert_eq!(
            first,
            Record::Upsert {
                id: 7,
                vector: vec![1.0, -2.5, 0.0]
            }
        );
        let (second, used2) = decode_record(&bytes[used..], 3, Checksums::Verify).expect("delete");
        assert_eq!(second, Record::Delete { id: 9 });
        assert_eq!(used + used2, bytes.len());
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut bytes = Vec::new();
        encode_upsert(7, &[1.0, 2.0], &mut bytes);
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(
                decode_record(&damaged, 2, Checksums::Verify).is_err(),
                "bit {i} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let header = encode_header(384);
        assert_eq!(decode_header(&header), Ok(384));
        assert_eq!(decode_header(&header[..19]), Err(HeaderError::Short(19)));
        let mut damaged = header;
        damaged[13] ^= 1;
        assert_eq!(decode_header(&damaged), Err(HeaderError::BadChecksum));
        damaged = header;
        damaged[0] = b'X';
        assert_eq!(decode_header(&damaged), Err(HeaderError::BadMagic));
    }
}
