//! JSON read strictly, into a `serde_json::Value`: a key given twice in one object (at
//! any depth) and a NUL character in any string or key are refused, with the path of
//! the offending key or value (`metadata.a`, `params[2]`).
//!
//! serde_json keeps the last of two equal keys, so `{"plan":"free","plan":"custom"}`
//! would mean whatever the last one says while a proxy or log reader in front of us
//! may believe the first: the request is ambiguous, and refused. PostgreSQL cannot
//! store NUL in `text` or `jsonb`, so a NUL would otherwise surface as a database
//! error (a 500) half way through a change, instead of as bad input up front.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug)]
pub enum Refused {
    /// The same key twice in one object: the repeated key's path.
    DuplicateKey(String),
    /// A NUL character (`\u0000`) in a string or a key: its path (empty at the top).
    Nul(String),
    /// Not JSON.
    Syntax(serde_json::Error),
}

/// Parses one JSON value (and nothing after it), strictly.
pub fn parse(bytes: &[u8]) -> Result<Value, Refused> {
    let refused = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        at: &Chain::Root,
        refused: &refused,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    // The visitor's own refusal comes out of serde as an opaque error: the cell holds
    // what it was.
    match (parsed, refused.into_inner()) {
        (_, Some(r)) => Err(r),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(Refused::Syntax(e)),
    }
}

/// Where a value sits, as a chain of borrowed links: nothing is allocated unless a
/// path has to be shown.
enum Chain<'a> {
    Root,
    Key(&'a Chain<'a>, &'a str),
    Index(&'a Chain<'a>, usize),
}

/// `a.b[0].c`, the way serde_path_to_error names fields; a NUL shown as `\u0000`.
impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chain::Root => Ok(()),
            Chain::Key(parent, key) => {
                if !matches!(parent, Chain::Root) {
                    write!(f, "{parent}.")?;
                }
                f.write_str(&key.replace('\0', "\\u0000"))
            }
            Chain::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct Strict<'a> {
    at: &'a Chain<'a>,
    refused: &'a RefCell<Option<Refused>>,
}

impl Strict<'_> {
    fn refuse<E: de::Error>(&self, why: Refused) -> E {
        let message = format!("{why:?}");
        *self.refused.borrow_mut() = Some(why);
        E::custom(message)
    }

    fn no_nul<E: de::Error>(&self, at: &Chain<'_>, s: &str) -> Result<(), E> {
        if s.contains('\0') {
            return Err(self.refuse(Refused::Nul(at.to_string())));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.no_nul(self.at, v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.no_nul(self.at, &v)?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            at: &Chain::Index(self.at, items.len()),
            refused: self.refused,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Chain::Key(self.at, &key);
            self.no_nul(&at, &key)?;
            if object.contains_key(&key) {
                return Err(self.refuse(Refused::DuplicateKey(at.to_string())));
            }
            let value = map.next_value_seed(Strict {
                at: &at,
                refused: self.refused,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(Refused::DuplicateKey(p)) => format!("dup {p}"),
            Err(Refused::Nul(p)) => format!("nul {p}"),
            Err(Refused::Syntax(_)) => "syntax".into(),
            Ok(v) => format!("ok {v}"),
        }
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path_at_any_depth() {
        assert_eq!(refused(r#"{"plan":"free","plan":"custom"}"#), "dup plan");
        assert_eq!(refused(r#"{"metadata":{"a":1,"a":2}}"#), "dup metadata.a");
        assert_eq!(refused(r#"{"x":[{"k":1},{"k":1,"k":2}]}"#), "dup x[1].k");
        // Escapes are compared after decoding: "\u0061" is "a".
        assert_eq!(refused(r#"{"a":1,"\u0061":2}"#), "dup a");
        // The same key in sibling objects is fine.
        assert_eq!(
            refused(r#"{"a":{"k":1},"b":{"k":1}}"#),
            r#"ok {"a":{"k":1},"b":{"k":1}}"#
        );
    }

    #[test]
    fn a_nul_in_a_value_or_a_key_is_named_by_its_path() {
        assert_eq!(refused(r#"{"name":"a\u0000b"}"#), "nul name");
        assert_eq!(
            refused(r#"{"metadata":{"a":["x","\u0000"]}}"#),
            "nul metadata.a[1]"
        );
        assert_eq!(
            refused(r#"{"metadata":{"k\u0000":1}}"#),
            r"nul metadata.k\u0000"
        );
        // Other control characters are PostgreSQL's to store.
        assert_eq!(refused(r#"{"a":"\u0001"}"#), r#"ok {"a":"\u0001"}"#);
    }

    #[test]
    fn anything_else_parses_as_serde_json_would() {
        let body = r#"{"n":-1,"u":18446744073709551615,"f":1.5,"t":true,"z":null,"s":"é","l":[]}"#;
        let ours = parse(body.as_bytes()).unwrap();
        let theirs: Value = serde_json::from_str(body).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(refused("{\"a\":1} x"), "syntax");
        assert_eq!(refused("{\"a\":"), "syntax");
        assert_eq!(
            refused(&"[".repeat(1000)),
            "syntax",
            "nesting stays bounded"
        );
    }
}
