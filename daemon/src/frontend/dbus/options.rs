//! Reads the `a{sv}` options of a call. Any D-Bus integer type is accepted where an integer is
//! meant, so `busctl` users are not tripped up; unknown keys and wrong types are `InvalidInput`
//! naming the option, so a typo never passes silently.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

use crate::error::{Error, Result};

pub type Dict = HashMap<String, OwnedValue>;

/// Rejects any key not in `known`.
pub fn only(opts: &Dict, known: &[&str]) -> Result<()> {
    match opts.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Error::InvalidInput(format!(
            "unknown option {k:?}; this method takes: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn wrong(key: &str, want: &str, v: &Value<'_>) -> Error {
    Error::InvalidInput(format!(
        "option {key:?} must be {want}, got D-Bus type '{}'",
        v.value_signature()
    ))
}

/// Unwraps a nested variant, which some clients send for `v` values.
fn inner<'a>(v: &'a Value<'a>) -> &'a Value<'a> {
    match v {
        Value::Value(b) => inner(b),
        other => other,
    }
}

pub fn uint(opts: &Dict, key: &str) -> Result<Option<u64>> {
    let Some(v) = opts.get(key) else {
        return Ok(None);
    };
    let v: &Value<'_> = inner(v);
    let n: Option<i128> = match *v {
        Value::U8(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::I64(x) => Some(x.into()),
        Value::U64(x) => Some(x.into()),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(n) => Err(Error::InvalidInput(format!(
            "option {key:?} must not be negative, got {n}"
        ))),
        None => Err(wrong(key, "an unsigned integer", v)),
    }
}

pub fn boolean(opts: &Dict, key: &str) -> Result<Option<bool>> {
    let Some(v) = opts.get(key) else {
        return Ok(None);
    };
    match inner(v) {
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(wrong(key, "a boolean", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: Vec<(&str, Value<'static>)>) -> Dict {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.try_to_owned().unwrap()))
            .collect()
    }

    #[test]
    fn integers_of_any_width() {
        for v in [
            Value::U32(5),
            Value::I32(5),
            Value::U64(5),
            Value::I16(5),
            Value::U8(5),
        ] {
            assert_eq!(uint(&dict(vec![("t", v)]), "t").unwrap(), Some(5));
        }
        assert!(uint(&dict(vec![("t", Value::I32(-1))]), "t").is_err());
        let e = uint(&dict(vec![("t", Value::from("5"))]), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"t\"") && e.contains("'s'"), "{e}");
        assert_eq!(uint(&dict(vec![]), "t").unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let d = dict(vec![("timeout_sm", Value::U32(1))]);
        let e = only(&d, &["timeout_ms"]).unwrap_err().to_string();
        assert!(e.contains("timeout_sm"), "{e}");
    }

    #[test]
    fn booleans() {
        assert_eq!(
            boolean(&dict(vec![("b", Value::Bool(true))]), "b").unwrap(),
            Some(true)
        );
        assert!(boolean(&dict(vec![("b", Value::U32(1))]), "b").is_err());
    }
}
