//! `Options` over a D-Bus `a{sv}`. Any D-Bus integer type is accepted where an integer is
//! meant, and an integer where a float is meant, so `busctl` users are not tripped up.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

use crate::error::{Error, Result};
pub use crate::frontend::options::Options;

pub type Dict = HashMap<String, OwnedValue>;

/// A value for an `a{sv}` reply or a property.
pub fn owned<'a>(v: impl Into<Value<'a>>) -> OwnedValue {
    // Values without file descriptors always convert.
    v.into()
        .try_to_owned()
        .unwrap_or_else(|_| OwnedValue::from(0u8))
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

impl Options for Dict {
    fn keys(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
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

    fn float(&self, key: &str) -> Result<Option<f64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let v: &Value<'_> = inner(v);
        let x = match *v {
            Value::F64(x) => x,
            Value::U8(x) => x.into(),
            Value::I16(x) => x.into(),
            Value::U16(x) => x.into(),
            Value::I32(x) => x.into(),
            Value::U32(x) => x.into(),
            Value::I64(x) => x as f64,
            Value::U64(x) => x as f64,
            _ => return Err(wrong(key, "a number", v)),
        };
        if x.is_finite() {
            Ok(Some(x))
        } else {
            Err(Error::InvalidInput(format!(
                "option {key:?} must be a finite number"
            )))
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match inner(v) {
            Value::Str(s) => Ok(Some(s.to_string())),
            other => Err(wrong(key, "a string", other)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let Some(v) = self.get(key) else {
            return Ok(Vec::new());
        };
        match inner(v) {
            Value::Str(s) => Ok(vec![s.to_string()]),
            Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    Value::Str(s) => Ok(s.to_string()),
                    other => Err(wrong(key, "a list of strings", other)),
                })
                .collect(),
            other => Err(wrong(key, "a list of strings", other)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match inner(v) {
            Value::Bool(b) => Ok(Some(*b)),
            other => Err(wrong(key, "a boolean", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::options::{generation, only};
    use crate::work::job::{Priority, Reasoning, Ticket, Transport};

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
            assert_eq!(dict(vec![("t", v)]).uint("t").unwrap(), Some(5));
        }
        assert!(dict(vec![("t", Value::I32(-1))]).uint("t").is_err());
        let e = dict(vec![("t", Value::from("5"))])
            .uint("t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"t\"") && e.contains("'s'"), "{e}");
        assert_eq!(dict(vec![]).uint("t").unwrap(), None);
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
            dict(vec![("b", Value::Bool(true))]).boolean("b").unwrap(),
            Some(true)
        );
        assert!(dict(vec![("b", Value::U32(1))]).boolean("b").is_err());
    }

    #[test]
    fn generation_options_accept_busctl_types_and_name_bad_ones() {
        let d = dict(vec![
            ("max_tokens", Value::I32(8)),
            ("temperature", Value::U32(1)),
            ("seed", Value::U64(42)),
            ("stop", Value::from(vec!["\n"])),
            ("reasoning", Value::from("hide")),
            ("priority", Value::from("background")),
        ]);
        let ticket = || Ticket::new("t", Transport::Dbus, Priority::Interactive);
        let mut t = ticket();
        let o = generation(&d, &mut t).unwrap();
        assert_eq!(
            (o.max_tokens, o.sampling.temperature, o.sampling.seed),
            (Some(8), Some(1.0), Some(42))
        );
        assert_eq!(
            (o.stop, o.reasoning, t.timeout, t.priority),
            (
                vec!["\n".to_owned()],
                Reasoning::Hide,
                None,
                Priority::Background
            )
        );
        for (k, v, needle) in [
            (
                "temprature",
                Value::F64(1.0),
                "unknown option \"temprature\"",
            ),
            (
                "temperature",
                Value::from("hot"),
                "\"temperature\" must be a number",
            ),
            ("top_p", Value::F64(1.5), "between 0 and 1"),
            (
                "reasoning",
                Value::from("loud"),
                "\"separate\", \"hide\" or \"inline\"",
            ),
            ("max_tokens", Value::U64(1 << 40), "too large"),
        ] {
            let e = generation(&dict(vec![(k, v)]), &mut ticket())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{k}: {e}");
        }
    }
}
