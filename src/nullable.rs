//! Request fields that tell three cases apart: absent (leave it as it is), `null` (put
//! it back, or forget it) and a value. With `#[serde(default, deserialize_with =
//! "crate::nullable::field")]` on an `Option<Option<T>>`: absent is `None` (the
//! default), `null` is `Some(None)`, a value is `Some(Some(v))`.

use serde::{Deserialize, Deserializer};

/// A field that is there, even as `null`, is `Some`.
pub fn field<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
