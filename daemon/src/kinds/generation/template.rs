//! Chat templates: the model's own Jinja template, rendered with minijinja in the way
//! transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, Python string
//! methods, `raise_exception`, `strftime_now`). Tested against transformers' renderings of the
//! families' real templates (tests/fixtures/chat_templates.json).

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::Kwargs;
use minijinja::{context, Environment, Error, ErrorKind, Value};

use super::facts::Facts;
use crate::chat::format::Format;
use crate::chat::{Message, Tool};

pub struct ChatTemplate {
    env: Environment<'static>,
    /// The template shows `tools` to the model (Qwen2.5, Llama 3.x, Mistral, Hermes...).
    pub takes_tools: bool,
    /// How the model writes tool calls, told from the template once, at load.
    pub calls: Format,
}

/// A template that does not parse (a load error), or one that fails for these messages (the
/// request's error: a template's own `raise_exception` lands here).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not parse: {0}")]
    Parse(#[source] Error),
    #[error("chat template: {0}")]
    Render(#[source] Error),
}

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Llama 3.2's template dates its system prompt with this.
        env.add_function("strftime_now", |format: String| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            strftime(&format, now)
        });
        // Python's json.dumps, as transformers' tojson: ", " and ": " (or `indent`), no
        // HTML escaping, keys in their order. minijinja's own is compact and escapes.
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_owned())
            .map_err(TemplateError::Parse)?;
        Ok(ChatTemplate {
            env,
            takes_tools: source.contains("tools"),
            calls: Format::of(source),
        })
    }

    /// The prompt for `messages` (and `tools`, when there are any), ending with the
    /// assistant's turn opened.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[Tool],
        facts: &Facts,
    ) -> Result<String, TemplateError> {
        let msgs: Vec<_> = messages.iter().map(Message::to_template).collect();
        let tools: Option<Vec<_>> =
            (!tools.is_empty()).then(|| tools.iter().map(|t| t.definition.clone()).collect());
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(TemplateError::Render)?;
        tmpl.render(context! {
            messages => Value::from_serialize(&msgs),
            tools => tools.map(|t| Value::from_serialize(&t)),
            add_generation_prompt => true,
            bos_token => facts.bos_token.clone().unwrap_or_default(),
            eos_token => facts.eos_token.clone().unwrap_or_default(),
        })
        .map_err(TemplateError::Render)
    }
}

fn tojson(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// `json.dumps(v, ensure_ascii=False, indent=indent)`.
fn python_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let (open, close, items): (char, char, Vec<(Option<&String>, &J)>) = match v {
        J::Array(a) => ('[', ']', a.iter().map(|x| (None, x)).collect()),
        J::Object(o) => ('{', '}', o.iter().map(|(k, x)| (Some(k), x)).collect()),
        // Strings and numbers as serde_json writes them: the same as Python's, non-ASCII kept.
        scalar => return out.push_str(&scalar.to_string()),
    };
    out.push(open);
    for (i, (key, item)) in items.iter().enumerate() {
        match indent {
            Some(n) => {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(n * (depth + 1)));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
        if let Some(k) = key {
            out.push_str(&J::String((*k).clone()).to_string());
            out.push_str(": ");
        }
        python_json(item, indent, depth + 1, out);
    }
    if let (Some(n), false) = (indent, items.is_empty()) {
        out.push('\n');
        out.push_str(&" ".repeat(n * depth));
    }
    out.push(close);
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Python's `strftime` for the date fields templates use (`%d %b %Y`, `%Y-%m-%d`, `%B`), at
/// `unix_secs` in UTC; other `%` fields are kept as written.
fn strftime(format: &str, unix_secs: u64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            context_length: 10,
            context_is_kv_room: false,
            eos: vec![2],
            bos: None,
            bos_token: Some("<s>".into()),
            eos_token: None,
            chat_template: None,
            max_tokens: 1,
            sampling: Default::default(),
        }
    }

    #[test]
    fn chatml_with_python_methods() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}\
             {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let out = t
            .render(&[Message::new("user", "  Hi there ")], &[], &facts())
            .unwrap();
        assert_eq!(
            out,
            "<s><|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_reaches_the_caller() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}").unwrap();
        assert!(t
            .render(&[], &[], &facts())
            .unwrap_err()
            .to_string()
            .contains("roles must alternate"));
    }

    #[test]
    fn strftime_formats_dates_as_python() {
        // 2024-07-26 12:00 UTC; 2000-02-29; 1970-01-01.
        assert_eq!(strftime("%d %b %Y", 1_721_995_200), "26 Jul 2024");
        assert_eq!(
            strftime("%Y-%m-%d (%B) 100%%", 951_782_400),
            "2000-02-29 (February) 100%"
        );
        assert_eq!(strftime("%d %b %Y %H", 0), "01 Jan 1970 %H");
    }

    /// Each family's real template (fetched by `make fetch` into $INFERD_CACHE/templates) renders
    /// as transformers renders it, or fails with the template's own error.
    #[test]
    fn family_templates_render_as_transformers_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/chat_templates.json")).unwrap(),
        )
        .unwrap();
        let cache = std::env::var_os("INFERD_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/inferd")
            });
        let today = |fmt: &str| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            strftime(fmt, now.as_secs())
        };
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 27);
        for case in cases {
            let what = format!("{} / {}", case["family"], case["conversation"]);
            let path = cache
                .join("templates")
                .join(case["template"].as_str().unwrap());
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `make fetch`", path.display()));
            let mut f = facts();
            f.bos_token = case["bos_token"].as_str().map(str::to_owned);
            f.eos_token = case["eos_token"].as_str().map(str::to_owned);
            let messages = crate::chat::messages_from_json(&case["messages"]).unwrap();
            let tools = match case.get("tools") {
                Some(t) => crate::chat::tools_from_json(t).unwrap(),
                None => Vec::new(),
            };
            let got = ChatTemplate::new(&source)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .render(&messages, &tools, &f)
                .map_err(|e| e.to_string());
            match (case["text"].as_str(), case["error"].as_str()) {
                (Some(want), _) => {
                    let want = want.replace("@@strftime_now(%d %b %Y)@@", &today("%d %b %Y"));
                    assert_eq!(got.as_deref(), Ok(want.as_str()), "{what}");
                }
                (_, Some(error)) => {
                    let e = got.expect_err(&what);
                    assert!(e.contains(error), "{what}: {e}");
                }
                _ => panic!("{what}: the case has neither text nor error"),
            }
        }
    }
}
