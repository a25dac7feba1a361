//! JSON to PostgreSQL and back. Parameters go as text (PostgreSQL parses them with the
//! parameter's own type, as psql would); results come back in binary and are decoded
//! here for the types a JSON client can use. A column of another type is refused
//! before the statement runs, naming the column (cast it, e.g. `::text`).

use std::error::Error;
use std::fmt::Write;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{Number, Value};
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// A parameter in PostgreSQL's text format (`None`: NULL).
#[derive(Debug)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A JSON value as the text PostgreSQL's input function for `ty` reads.
pub fn param(value: &Value, ty: &Type) -> TextParam {
    TextParam(match value {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => match ty.kind() {
            Kind::Array(_) => Some(array_literal(items)),
            _ => Some(value.to_string()),
        },
        Value::Object(_) => Some(value.to_string()),
    })
}

/// `{a,"b c",NULL}`: every element quoted, so commas, braces and spaces are data.
fn array_literal(items: &[Value]) -> String {
    let mut s = String::from("{");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Value::Null => s.push_str("NULL"),
            Value::Array(inner) => s.push_str(&array_literal(inner)),
            other => {
                let text = match other {
                    Value::String(t) => t.clone(),
                    o => o.to_string(),
                };
                s.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    s
}

/// Whether preparing `stmt` took a type lookup: a parameter or column type outside
/// tokio-postgres's built-in list (an enum, a domain, an extension's type). The client
/// keeps the statements it prepared for such lookups for the connection's life.
pub fn looked_up(stmt: &tokio_postgres::Statement) -> bool {
    stmt.params()
        .iter()
        .chain(stmt.columns().iter().map(|c| c.type_()))
        .any(|t| Type::from_oid(t.oid()).is_none())
}

/// Whether results of this type can be returned.
pub fn supported(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Domain(base) => supported(base),
        Kind::Array(elem) => !matches!(elem.kind(), Kind::Array(_)) && supported(elem),
        _ => matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::CHAR
                | Type::XML
                | Type::UNKNOWN
                | Type::UUID
                | Type::JSON
                | Type::JSONB
                | Type::TIMESTAMPTZ
                | Type::TIMESTAMP
                | Type::DATE
                | Type::TIME
                | Type::INTERVAL
                | Type::BYTEA
                | Type::INET
                | Type::CIDR
                | Type::VOID
        ),
    }
}

/// One result cell as JSON.
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(Cell)
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        supported(ty)
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    match ty.kind() {
        Kind::Enum(_) => return Ok(Value::String(String::from_utf8(raw.to_vec())?)),
        Kind::Domain(base) => return decode(base, raw),
        Kind::Array(elem) => return array(elem, raw),
        _ => {}
    }
    Ok(match *ty {
        Type::VOID => Value::Null,
        Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
        Type::INT2 => i16::from_sql(ty, raw)?.into(),
        Type::INT4 => i32::from_sql(ty, raw)?.into(),
        Type::INT8 => i64::from_sql(ty, raw)?.into(),
        Type::OID => u32::from_sql(ty, raw)?.into(),
        Type::FLOAT4 => float(f32::from_sql(ty, raw)? as f64),
        Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
        Type::NUMERIC => Value::String(numeric(raw)?),
        Type::CHAR => Value::String((i8::from_sql(ty, raw)? as u8 as char).to_string()),
        Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
        Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
        Type::TIMESTAMPTZ => Value::String(DateTime::<Utc>::from_sql(ty, raw)?.to_rfc3339()),
        Type::TIMESTAMP => Value::String(NaiveDateTime::from_sql(ty, raw)?.to_string()),
        Type::DATE => Value::String(NaiveDate::from_sql(ty, raw)?.to_string()),
        Type::TIME => Value::String(NaiveTime::from_sql(ty, raw)?.to_string()),
        Type::INTERVAL => Value::String(interval(raw)?),
        Type::BYTEA => Value::String(format!("\\x{}", hex::encode(raw))),
        Type::INET | Type::CIDR => {
            let inet = postgres_protocol::types::inet_from_sql(raw)?;
            Value::String(format!("{}/{}", inet.addr(), inet.netmask()))
        }
        // text-like: the binary format is the text itself
        _ => Value::String(String::from_utf8(raw.to_vec())?),
    })
}

fn array(elem: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    use fallible_iterator::FallibleIterator;
    let arr = postgres_protocol::types::array_from_sql(raw)?;
    let dims: Vec<usize> = arr
        .dimensions()
        .map(|d| Ok(d.len as usize))
        .collect::<Vec<_>>()?;
    let values: Vec<Value> = arr
        .values()
        .map(|v| match v {
            None => Ok(Value::Null),
            Some(bytes) => decode(elem, bytes).map_err(|e| e.to_string().into()),
        })
        .collect::<Vec<_>>()
        .map_err(|e: Box<dyn Error + Sync + Send>| e)?;
    Ok(nest(&dims, values))
}

/// Flat values of an n-dimensional array as nested JSON arrays.
fn nest(dims: &[usize], values: Vec<Value>) -> Value {
    match dims {
        [] => Value::Array(values),
        [_] => Value::Array(values),
        [_, rest @ ..] => {
            let chunk: usize = rest.iter().product::<usize>().max(1);
            let mut out = Vec::new();
            let mut it = values.into_iter().peekable();
            while it.peek().is_some() {
                out.push(nest(rest, it.by_ref().take(chunk).collect()));
            }
            Value::Array(out)
        }
    }
}

fn be_i16(raw: &[u8], at: usize) -> Result<i16, BoxError> {
    raw.get(at..at + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated numeric".into())
}

/// PostgreSQL's binary numeric (base-10000 digits) as exact decimal text.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = be_i16(raw, 0)? as usize;
    let weight = be_i16(raw, 2)? as i64;
    let sign = be_i16(raw, 4)? as u16;
    let dscale = be_i16(raw, 6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| be_i16(raw, 8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let digit = |k: i64| -> i16 {
        if k < 0 {
            0
        } else {
            digits.get(k as usize).copied().unwrap_or(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(s, "{}", digit(k));
            } else {
                let _ = write!(s, "{:04}", digit(k));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut j = 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(weight + j));
            j += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// An interval as ISO 8601 (`P1Y2M3DT4H5M6.5S`).
fn interval(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad interval".into());
    }
    let micros = i64::from_be_bytes(raw[0..8].try_into()?);
    let days = i32::from_be_bytes(raw[8..12].try_into()?);
    let months = i32::from_be_bytes(raw[12..16].try_into()?);
    let mut s = String::from("P");
    let (y, m) = (months / 12, months % 12);
    if y != 0 {
        let _ = write!(s, "{y}Y");
    }
    if m != 0 {
        let _ = write!(s, "{m}M");
    }
    if days != 0 {
        let _ = write!(s, "{days}D");
    }
    if micros != 0 {
        s.push('T');
        let (h, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
        let (mi, rest) = (rest / 60_000_000, rest % 60_000_000);
        if h != 0 {
            let _ = write!(s, "{h}H");
        }
        if mi != 0 {
            let _ = write!(s, "{mi}M");
        }
        if rest != 0 {
            let secs = rest as f64 / 1e6;
            let _ = write!(s, "{secs}S");
        }
    }
    if s == "P" {
        s.push_str("T0S");
    }
    Ok(s)
}

/// A cell's size as PostgreSQL sent it (NULL: 0), read before decoding it, so an
/// oversized result is refused without being copied into JSON.
pub struct RawLen(pub usize);

impl<'a> FromSql<'a> for RawLen {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RawLen(raw.len()))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(RawLen(0))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight, sign as i16, dscale] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_are_exact() {
        // 12345.678 = [1, 2345, 6780], weight 1, dscale 3
        assert_eq!(
            numeric(&num(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.0001 = [1], weight -1, dscale 4
        assert_eq!(numeric(&num(1, -1, 0x4000, 4, &[1])).unwrap(), "-0.0001");
        // 0.00000001 = [1], weight -2, dscale 8
        assert_eq!(numeric(&num(1, -2, 0, 8, &[100])).unwrap(), "0.00000100");
        // 100000000 = [1], weight 2
        assert_eq!(numeric(&num(1, 2, 0, 0, &[1])).unwrap(), "100000000");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
    }

    #[test]
    fn array_literals_quote_everything() {
        let v = serde_json::json!(["a", "b,c", null, "\"q\"", 1, ["x"]]);
        assert_eq!(
            array_literal(v.as_array().unwrap()),
            r#"{"a","b,c",NULL,"\"q\"","1",{"x"}}"#
        );
    }

    #[test]
    fn nested_dimensions() {
        let vals: Vec<Value> = (1..=6).map(Value::from).collect();
        assert_eq!(
            nest(&[2, 3], vals),
            serde_json::json!([[1, 2, 3], [4, 5, 6]])
        );
    }
}
