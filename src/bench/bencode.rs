//! A tiny bencode encoder and decoder: just enough for rtpengine's ng control protocol
//! (a cookie, a space, then one bencoded dictionary per UDP datagram).
//!
//! Byte strings, integers, lists and dictionaries (keys kept sorted on encode, as the format
//! requires). The decoder takes untrusted bytes: it checks every length, limits nesting, and
//! returns an error rather than panicking on anything malformed.

use std::collections::BTreeMap;

/// One bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` when this is a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The text of a byte string (lossy UTF-8).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(k.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value filling all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Value, String> {
        let mut pos = 0;
        let v = decode_at(buf, &mut pos, 0)?;
        if pos != buf.len() {
            return Err(format!(
                "{} trailing bytes after the value",
                buf.len() - pos
            ));
        }
        Ok(v)
    }
}

const MAX_DEPTH: usize = 32;

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nesting deeper than 32".into());
    }
    let first = *buf.get(*pos).ok_or("truncated: value expected")?;
    match first {
        b'i' => {
            *pos += 1;
            let end = find(buf, *pos, b'e')?;
            let text = std::str::from_utf8(&buf[*pos..end]).map_err(|_| "integer not ASCII")?;
            let i = text
                .parse::<i64>()
                .map_err(|_| format!("bad integer {text:?}"))?;
            *pos = end + 1;
            Ok(Value::Int(i))
        }
        b'l' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                match buf.get(*pos) {
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Value::List(items));
                    }
                    Some(_) => items.push(decode_at(buf, pos, depth + 1)?),
                    None => return Err("truncated list".into()),
                }
            }
        }
        b'd' => {
            *pos += 1;
            let mut d = BTreeMap::new();
            loop {
                match buf.get(*pos) {
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Value::Dict(d));
                    }
                    Some(_) => {
                        let key = match decode_at(buf, pos, depth + 1)? {
                            Value::Bytes(k) => k,
                            _ => return Err("dictionary key is not a byte string".into()),
                        };
                        let v = decode_at(buf, pos, depth + 1)?;
                        d.insert(key, v);
                    }
                    None => return Err("truncated dictionary".into()),
                }
            }
        }
        b'0'..=b'9' => {
            let colon = find(buf, *pos, b':')?;
            let text = std::str::from_utf8(&buf[*pos..colon]).map_err(|_| "length not ASCII")?;
            let len = text
                .parse::<usize>()
                .map_err(|_| format!("bad string length {text:?}"))?;
            let start = colon + 1;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= buf.len())
                .ok_or("string runs past the end")?;
            *pos = end;
            Ok(Value::Bytes(buf[start..end].to_vec()))
        }
        other => Err(format!("unexpected byte 0x{other:02x}")),
    }
}

fn find(buf: &[u8], from: usize, byte: u8) -> Result<usize, String> {
    buf.get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|i| from + i)
        .ok_or_else(|| format!("truncated: '{}' expected", byte as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted_dict() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c1")),
            ("flags", Value::List(vec![Value::str("x")])),
            ("n", Value::Int(-3)),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:call-id2:c17:command5:offer5:flagsl1:xe1:ni-3ee".to_vec()
        );
        assert_eq!(Value::decode(&out).unwrap(), v);
    }

    #[test]
    fn decodes_rtpengine_reply() {
        let v = Value::decode(b"d3:sdp5:v=0\r\n6:result2:oke").unwrap();
        assert_eq!(v.get("result").and_then(Value::as_text).unwrap(), "ok");
        assert_eq!(v.get("sdp").and_then(Value::as_text).unwrap(), "v=0\r\n");
    }

    #[test]
    fn rejects_malformed_without_panic() {
        for bad in [
            &b""[..],
            b"d",
            b"l",
            b"i12",
            b"5:ab",
            b"99999999999999999999999:x",
            b"di1e1:xe",
            b"x",
            b"1:ab",
            b"d3:sdpe",
        ] {
            assert!(Value::decode(bad).is_err(), "{bad:?}");
        }
        let deep = vec![b'l'; 100];
        assert!(Value::decode(&deep).is_err());
    }
}
