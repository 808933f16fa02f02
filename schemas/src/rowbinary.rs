//! Rows encoded in ClickHouse's `RowBinary` ahead of their insert.
//!
//! The collector's write-ahead log keeps each request's rows as the bytes the insert sends, so
//! that draining the log is reading bytes and sending them — no decoding into rows, no rows to
//! drop (docs/performance.md, issue 16). [`encode`] writes a row exactly as the `clickhouse`
//! crate's own insert does (its serializer is private): fields in declaration order — the
//! table's columns, see [`crate::rows`] — strings and arrays with a LEB128 length, numbers
//! little-endian, `Nullable` with a null byte first, `Map` as its length and pairs.
//! [`crate::Store::insert_row_binary`] sends such bytes, naming the row type's columns.
//!
//! Only the shapes the row types use are supported; anything else is an error, never bytes
//! ClickHouse would read differently.

use serde::Serialize;
use serde::ser::{self, Impossible};

#[derive(Debug, thiserror::Error)]
#[error("cannot encode a row as RowBinary: {0}")]
pub struct EncodeError(String);

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

/// Appends `row` to `out` in `RowBinary`. On error `out` may hold part of the row: callers
/// discard the whole buffer.
pub fn encode<T: Serialize>(row: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    row.serialize(&mut Encoder { out })
}

/// Writers of single values, for a row encoded field by field (in its type's column order)
/// from data that is not a row type; a test must then compare its bytes with [`encode`]'s of
/// the row type, which is the schema.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    leb128(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The length of an `Array` or a `Map` (its elements follow).
pub fn put_len(out: &mut Vec<u8>, len: usize) {
    leb128(out, len as u64);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `DateTime64(9)`: nanoseconds since the epoch, refused outside its range.
pub fn put_time(out: &mut Vec<u8>, t: time::OffsetDateTime) -> Result<(), EncodeError> {
    let nanos = i64::try_from(t.unix_timestamp_nanos()).map_err(|_| EncodeError(format!("{t} is out of DateTime64(9) range")))?;
    out.extend_from_slice(&nanos.to_le_bytes());
    Ok(())
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

fn unsupported<T>(what: &str) -> Result<T, EncodeError> {
    Err(EncodeError(format!("{what} has no RowBinary encoding here")))
}

/// Numbers are written little-endian, at their width.
macro_rules! little_endian {
    ($($method:ident: $t:ty),* $(,)?) => {
        $(fn $method(self, v: $t) -> Result<(), EncodeError> {
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl<'a, 'b> ser::Serializer for &'a mut Encoder<'b> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), EncodeError>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), EncodeError>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(v as u8);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.out.push(v);
        Ok(())
    }
    little_endian! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64,
    }
    fn serialize_char(self, _: char) -> Result<(), EncodeError> {
        unsupported("a char")
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        leb128(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(1);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.out.push(0);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        unsupported("a unit")
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), EncodeError> {
        unsupported(name)
    }
    fn serialize_unit_variant(self, name: &'static str, _: u32, _: &'static str) -> Result<(), EncodeError> {
        unsupported(name)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeError> {
        unsupported(name)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, EncodeError> {
        let Some(len) = len else { return unsupported("a sequence of unknown length") };
        leb128(self.out, len as u64);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, EncodeError> {
        unsupported(name)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, EncodeError> {
        let Some(len) = len else { return unsupported("a map of unknown length") };
        leb128(self.out, len as u64);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, EncodeError> {
        unsupported(name)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Elements and fields follow one another, with nothing between them.
macro_rules! in_sequence {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for &mut Encoder<'_> {
            type Ok = ();
            type Error = EncodeError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    };
}

in_sequence!(SerializeSeq, serialize_element);
in_sequence!(SerializeTuple, serialize_element);
in_sequence!(SerializeTupleStruct, serialize_field);

impl ser::SerializeMap for &mut Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128_and_numbers_little_endian() {
        let mut out = Vec::new();
        encode(&("a".repeat(200), 1u32, Some(2.5f64), None::<u64>, vec![true, false]), &mut out).unwrap();
        assert_eq!(&out[..2], &[0xc8, 0x01], "200 as LEB128");
        let rest = &out[202..];
        assert_eq!(&rest[..4], &1u32.to_le_bytes());
        assert_eq!(rest[4], 0, "not null");
        assert_eq!(&rest[5..13], &2.5f64.to_le_bytes());
        assert_eq!(&rest[13..], &[1, 2, 1, 0], "null, then an array of two bools");
    }

    #[test]
    fn a_map_is_its_length_then_its_pairs() {
        let map: std::collections::BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        let mut out = Vec::new();
        encode(&map, &mut out).unwrap();
        assert_eq!(out, [1, 1, b'k', 1, b'v']);
    }
}
