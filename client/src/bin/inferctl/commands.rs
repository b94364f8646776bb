//! The commands that talk to a daemon, written once over either transport (`transport.rs`).

use std::collections::HashMap;

use inferd_client::Error;

use crate::transport::{HealthReport, Manage, Transport};
use crate::{generate, output, tensor_arg, Command};

pub async fn run(t: &Transport<'_>, json: bool, command: Command) -> Result<(), Error> {
    match command {
        Command::Models => output::models(&t.models().await?, json),
        Command::Health => match t.health().await? {
            HealthReport::Daemon(h) => {
                output::health(&h, json);
                if h.status == "degraded" {
                    std::process::exit(crate::exit::Exit::Degraded as i32);
                }
            }
            HealthReport::Statuses(s) => {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default())
            }
        },
        Command::Load { name } => drop(t.manage(Manage::Load(&name)).await?),
        Command::Unload { name } => drop(t.manage(Manage::Unload(&name)).await?),
        Command::Reload => drop(t.manage(Manage::Reload).await?),
        Command::Warmup { name } => {
            if let Some(status) = t.manage(Manage::Warmup(&name)).await? {
                output::models(&[status], json);
            }
        }
        Command::Embed {
            model,
            texts,
            similarity,
            no_truncate,
            timeout_ms,
        } => {
            let texts = or_stdin_lines(texts)?;
            let (vectors, info) = t.embed(&model, &texts, !no_truncate, timeout_ms).await?;
            let truncated = info["truncated"].as_array().cloned().unwrap_or_default();
            for (i, _) in truncated
                .iter()
                .enumerate()
                .filter(|(_, t)| t.as_bool() == Some(true))
            {
                eprintln!(
                    "warning: text {} was truncated to the model's max_length",
                    i + 1
                );
            }
            output::embeddings(&texts, &vectors, &info, similarity, json);
        }
        Command::Generate {
            model,
            prompt,
            options,
        } => {
            // A prompt from a file or a pipe ends with the file's newline, not the user's.
            let prompt = if prompt == "-" {
                stdin()?.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                prompt
            };
            generate::generate(t, &model, &prompt, &options, json).await?
        }
        Command::Chat {
            model,
            system,
            options,
        } => generate::chat(t, &model, system, &options).await?,
        Command::Classify {
            model,
            texts,
            top_k,
        } => {
            let texts = or_stdin_lines(texts)?;
            output::classes(&texts, &t.classify(&model, &texts, top_k).await?, json)
        }
        Command::Infer { model, inputs } => {
            if inputs.iter().filter(|i| i.ends_with("=-")).count() > 1 {
                return Err(Error::InvalidInput(
                    "`NAME=-` (stdin) can be given once".into(),
                ));
            }
            let mut tensors = HashMap::new();
            for arg in &inputs {
                let (name, tensor) = tensor_arg::parse(arg).map_err(Error::InvalidInput)?;
                tensors.insert(name, tensor);
            }
            output::tensors(&t.infer(&model, tensors).await?, json);
        }
        // Handled in main, before any connection.
        Command::Import(_) | Command::Pull(_) | Command::Completions { .. } | Command::Man => {}
    }
    Ok(())
}

/// All of stdin, as text.
fn stdin() -> Result<String, Error> {
    std::io::read_to_string(std::io::stdin())
        .map_err(|e| Error::InvalidInput(format!("reading stdin: {e}")))
}

/// `texts`, where a `-` stands for stdin's non-empty lines (stdin can be read once).
fn or_stdin_lines(texts: Vec<String>) -> Result<Vec<String>, Error> {
    match texts.iter().filter(|t| *t == "-").count() {
        0 => return Ok(texts),
        1 => {}
        _ => return Err(Error::InvalidInput("`-` (stdin) can be given once".into())),
    }
    let input = stdin()?;
    let mut out = Vec::new();
    for t in texts {
        if t == "-" {
            out.extend(
                input
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        } else {
            out.push(t);
        }
    }
    Ok(out)
}
