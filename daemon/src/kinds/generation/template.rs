//! Chat templates: the model's own Jinja template, rendered with minijinja in the way
//! transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, Python string
//! methods, `raise_exception`).

use minijinja::{context, Environment, Error, ErrorKind};

use super::facts::Facts;

pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| format!("chat template does not parse: {e}"))?;
        Ok(ChatTemplate { env })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[(String, String)], facts: &Facts) -> Result<String, String> {
        let msgs: Vec<_> = messages
            .iter()
            .map(|(role, content)| context! { role => role, content => content })
            .collect();
        let tmpl = self.env.get_template("chat").map_err(|e| e.to_string())?;
        tmpl.render(context! {
            messages => msgs,
            add_generation_prompt => true,
            bos_token => facts.bos_token.clone().unwrap_or_default(),
            eos_token => facts.eos_token.clone().unwrap_or_default(),
        })
        .map_err(|e| format!("chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            context_length: 10,
            eos: vec![2],
            bos: None,
            bos_token: Some("<s>".into()),
            eos_token: None,
            chat_template: None,
            max_tokens: 1,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
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
            .render(&[("user".into(), "  Hi there ".into())], &facts())
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
            .render(&[], &facts())
            .unwrap_err()
            .contains("roles must alternate"));
    }
}
