//! Reads the `a{sv}` options of a call. Any D-Bus integer type is accepted where an integer is
//! meant, so `busctl` users are not tripped up; unknown keys and wrong types are `InvalidInput`
//! naming the option, so a typo never passes silently.

use std::collections::HashMap;
use std::time::Duration;

use zbus::zvariant::{OwnedValue, Value};

use crate::engine::job::{GenOptions, Reasoning};
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

/// A float; integers are accepted too (`busctl` users type `temperature i 0`).
pub fn float(opts: &Dict, key: &str) -> Result<Option<f64>> {
    let Some(v) = opts.get(key) else {
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

pub fn string(opts: &Dict, key: &str) -> Result<Option<String>> {
    let Some(v) = opts.get(key) else {
        return Ok(None);
    };
    match inner(v) {
        Value::Str(s) => Ok(Some(s.to_string())),
        other => Err(wrong(key, "a string", other)),
    }
}

/// A list of strings (`as`); a single string is taken as a list of one.
pub fn strings(opts: &Dict, key: &str) -> Result<Vec<String>> {
    let Some(v) = opts.get(key) else {
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

pub fn boolean(opts: &Dict, key: &str) -> Result<Option<bool>> {
    let Some(v) = opts.get(key) else {
        return Ok(None);
    };
    match inner(v) {
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(wrong(key, "a boolean", other)),
    }
}

/// Generation options, the same names on every transport. Returns them with the `timeout_ms`
/// deadline, which the engine also applies while the request is queued.
pub fn generation(opts: &Dict) -> Result<(GenOptions, Option<Duration>)> {
    only(opts, &GENERATION_OPTIONS)?;
    let u32_opt = |k: &str| -> Result<Option<u32>> {
        uint(opts, k)?
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| Error::InvalidInput(format!("option {k:?} is too large: {v}")))
            })
            .transpose()
    };
    let reasoning = match string(opts, "reasoning")?.as_deref() {
        None | Some("separate") => Reasoning::Separate,
        Some("hide") => Reasoning::Hide,
        Some("inline") => Reasoning::Inline,
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "option \"reasoning\" must be \"separate\", \"hide\" or \"inline\", got {other:?}"
            )))
        }
    };
    let o = GenOptions {
        max_tokens: u32_opt("max_tokens")?,
        temperature: float(opts, "temperature")?,
        top_k: u32_opt("top_k")?,
        top_p: float(opts, "top_p")?,
        min_p: float(opts, "min_p")?,
        repetition_penalty: float(opts, "repetition_penalty")?,
        seed: uint(opts, "seed")?,
        stop: strings(opts, "stop")?,
        reasoning,
        reasoning_budget: u32_opt("reasoning_budget")?,
        truncate: boolean(opts, "truncate")?.unwrap_or(false),
    };
    for (k, v, lo, hi) in [
        ("temperature", o.temperature, 0.0, 100.0),
        ("top_p", o.top_p, 0.0, 1.0),
        ("min_p", o.min_p, 0.0, 1.0),
        ("repetition_penalty", o.repetition_penalty, 0.01, 100.0),
    ] {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            return Err(Error::InvalidInput(format!(
                "option {k:?} must be between {lo} and {hi}"
            )));
        }
    }
    let timeout = u32_opt("timeout_ms")?.map(|ms| Duration::from_millis(ms.into()));
    Ok((o, timeout))
}

pub const GENERATION_OPTIONS: [&str; 13] = [
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
    "reasoning",
    "reasoning_budget",
    "timeout_ms",
    "truncate",
    "handle_token",
];

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

    #[test]
    fn generation_options_accept_busctl_types_and_name_bad_ones() {
        let d = dict(vec![
            ("max_tokens", Value::I32(8)),
            ("temperature", Value::U32(1)),
            ("seed", Value::U64(42)),
            ("stop", Value::from(vec!["\n"])),
            ("reasoning", Value::from("hide")),
        ]);
        let (o, t) = generation(&d).unwrap();
        assert_eq!(
            (o.max_tokens, o.temperature, o.seed),
            (Some(8), Some(1.0), Some(42))
        );
        assert_eq!(
            (o.stop, o.reasoning, t),
            (vec!["\n".to_owned()], Reasoning::Hide, None)
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
            let e = generation(&dict(vec![(k, v)])).unwrap_err().to_string();
            assert!(e.contains(needle), "{k}: {e}");
        }
    }
}
