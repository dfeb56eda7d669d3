//! Validation of Messages params (synchronous on `/v1/messages` and `count_tokens`,
//! asynchronous — reported as an `errored` result — inside batches).
//!
//! Messages follow the `path: problem` style of the real API's validation errors.

use serde_json::Value;

/// Where the params come from; the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `POST /v1/messages`.
    Messages,
    /// A `params` object inside `POST /v1/messages/batches`.
    Batch,
    /// `POST /v1/messages/count_tokens` (no `max_tokens`).
    CountTokens,
}

const CREATE_KEYS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "cache_control",
    "service_tier",
    "inference_geo",
    "container",
    "stream",
    "context_management",
    "mcp_servers",
    "speed",
    "fallbacks",
];

const COUNT_KEYS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "cache_control",
    "context_management",
    "mcp_servers",
];

const MAX_MESSAGES: usize = 100_000;

/// Checks params; the error is a human-readable `path: problem` message.
pub(crate) fn validate(params: &Value, mode: Mode) -> Result<(), String> {
    let Some(p) = params.as_object() else {
        return Err("params: Input should be a valid dictionary".into());
    };
    let known = if mode == Mode::CountTokens {
        COUNT_KEYS
    } else {
        CREATE_KEYS
    };
    if let Some(extra) = p.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }

    match p.get("model") {
        None => return Err("model: Field required".into()),
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        Some(Value::String(_)) => {
            return Err("model: String should have at least 1 character".into());
        }
        Some(_) => return Err("model: Input should be a valid string".into()),
    }

    if mode != Mode::CountTokens {
        match p.get("max_tokens") {
            None => return Err("max_tokens: Field required".into()),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 && n <= i64::from(u32::MAX) => {}
                Some(_) => {
                    return Err("max_tokens: Input should be greater than or equal to 1".into());
                }
                None => return Err("max_tokens: Input should be a valid integer".into()),
            },
        }
    }

    messages(p.get("messages"))?;

    if let Some(system) = p.get("system") {
        match system {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for (i, b) in blocks.iter().enumerate() {
                    if b.get("type").and_then(Value::as_str) != Some("text")
                        || !b.get("text").is_some_and(Value::is_string)
                    {
                        return Err(format!(
                            "system.{i}: Input should be a text block {{\"type\": \"text\", \"text\": ...}}"
                        ));
                    }
                }
            }
            _ => {
                return Err("system: Input should be a valid string or list of text blocks".into());
            }
        }
    }

    unit_range(p.get("temperature"), "temperature")?;
    unit_range(p.get("top_p"), "top_p")?;
    if let Some(k) = p.get("top_k")
        && k.as_i64().is_none_or(|k| k < 0)
    {
        return Err("top_k: Input should be a non-negative integer".into());
    }
    if let Some(stops) = p.get("stop_sequences")
        && !stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err("stop_sequences: Input should be a valid list of strings".into());
    }
    if let Some(m) = p.get("metadata")
        && !m.is_object()
    {
        return Err("metadata: Input should be a valid dictionary".into());
    }

    match (mode, p.get("stream")) {
        (_, None | Some(Value::Bool(false))) => {}
        (Mode::Batch, Some(Value::Bool(true))) => {
            return Err(
                "stream: streaming is not supported for requests in a message batch".into(),
            );
        }
        (_, Some(Value::Bool(true))) => {
            return Err(
                "stream: the simulator does not support streaming; send stream=false".into(),
            );
        }
        (_, Some(_)) => return Err("stream: Input should be a valid boolean".into()),
    }
    if mode == Mode::Batch && p.contains_key("speed") {
        return Err("speed: fast mode is not supported for requests in a message batch".into());
    }

    let structured = output_format(p.get("output_config"), "output_config")?;
    let structured = output_format(p.get("output_format"), "output_format")? || structured;
    tools(p.get("tools"), p.get("tool_choice"))?;

    if structured && citations_enabled(p.get("messages")) {
        return Err(
            "Citations cannot be enabled together with structured outputs (output_config.format)"
                .into(),
        );
    }
    Ok(())
}

fn messages(messages: Option<&Value>) -> Result<(), String> {
    let messages = match messages {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: List should have at least 1 item after validation, not 0".into());
    }
    if messages.len() > MAX_MESSAGES {
        return Err(format!(
            "messages: List should have at most {MAX_MESSAGES} items after validation, not {}",
            messages.len()
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(format!("messages.{i}: Input should be a valid dictionary"));
        };
        if let Some(extra) = m.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(format!(
                "messages.{i}.{extra}: Extra inputs are not permitted"
            ));
        }
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            None if !m.contains_key("role") => {
                return Err(format!("messages.{i}.role: Field required"));
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        match m.get("content") {
            None => return Err(format!("messages.{i}.content: Field required")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(format!(
                    "messages.{i}.content: text content blocks must be non-empty"
                ));
            }
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() {
                    return Err(format!(
                        "messages.{i}.content: List should have at least 1 item after validation, not 0"
                    ));
                }
                for (j, b) in blocks.iter().enumerate() {
                    block(b).map_err(|e| format!("messages.{i}.content.{j}{e}"))?;
                }
            }
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list of content blocks"
                ));
            }
        }
    }
    Ok(())
}

/// Checks one content block; the error starts with the sub-path (`.text: ...` or `: ...`).
fn block(b: &Value) -> Result<(), String> {
    let Some(ty) = b.get("type").and_then(Value::as_str) else {
        return Err(".type: Field required".into());
    };
    match ty {
        "text" => match b.get("text") {
            Some(Value::String(t)) if !t.is_empty() => Ok(()),
            Some(Value::String(_)) => Err(": text content blocks must be non-empty".into()),
            _ => Err(".text: Field required".into()),
        },
        "image" | "document" => {
            let Some(source) = b.get("source").filter(|s| s.is_object()) else {
                return Err(".source: Field required".into());
            };
            match source.get("type").and_then(Value::as_str) {
                Some("base64" | "text") => {
                    if !source.get("data").is_some_and(Value::is_string) {
                        return Err(".source.data: Field required".into());
                    }
                    if !source.get("media_type").is_some_and(Value::is_string) {
                        return Err(".source.media_type: Field required".into());
                    }
                    Ok(())
                }
                Some("url") if source.get("url").is_some_and(Value::is_string) => Ok(()),
                Some("file") if source.get("file_id").is_some_and(Value::is_string) => Ok(()),
                Some("content") if ty == "document" && source.get("content").is_some() => Ok(()),
                _ => {
                    Err(".source: Input tag does not match any of the expected source types".into())
                }
            }
        }
        _ => Ok(()),
    }
}

fn unit_range(v: Option<&Value>, name: &str) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(()),
            Some(_) => Err(format!(
                "{name}: Input should be greater than or equal to 0 and less than or equal to 1"
            )),
            None => Err(format!("{name}: Input should be a valid number")),
        },
    }
}

/// Checks `output_config` / `output_format`; `Ok(true)` when a JSON schema format is set.
fn output_format(v: Option<&Value>, name: &str) -> Result<bool, String> {
    let Some(v) = v else { return Ok(false) };
    let format = if name == "output_config" {
        let Some(cfg) = v.as_object() else {
            return Err(format!("{name}: Input should be a valid dictionary"));
        };
        match cfg.get("format") {
            None | Some(Value::Null) => return Ok(false),
            Some(f) => f,
        }
    } else {
        v
    };
    let path = if name == "output_config" {
        "output_config.format"
    } else {
        name
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        _ => return Err(format!("{path}.type: Input should be 'json_schema'")),
    }
    if !format.get("schema").is_some_and(Value::is_object) {
        return Err(format!(
            "{path}.schema: Field required (a JSON Schema object)"
        ));
    }
    Ok(true)
}

fn tools(tools: Option<&Value>, choice: Option<&Value>) -> Result<(), String> {
    let tools = match tools {
        None => &[][..],
        Some(Value::Array(t)) => &t[..],
        Some(_) => return Err("tools: Input should be a valid list".into()),
    };
    for (i, t) in tools.iter().enumerate() {
        let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"));
        if custom {
            if !t.get("name").is_some_and(Value::is_string) {
                return Err(format!("tools.{i}.name: Field required"));
            }
            if !t.get("input_schema").is_some_and(Value::is_object) {
                return Err(format!("tools.{i}.input_schema: Field required"));
            }
        }
    }
    let Some(choice) = choice else { return Ok(()) };
    match choice.get("type").and_then(Value::as_str) {
        Some("auto" | "none") => Ok(()),
        Some("any") if !tools.is_empty() => Ok(()),
        Some("any") => Err("tool_choice: 'any' requires at least one tool".into()),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str);
            if tools
                .iter()
                .any(|t| t.get("name").and_then(Value::as_str) == name && name.is_some())
            {
                Ok(())
            } else {
                Err(format!(
                    "tool_choice.name: tool {} is not in tools",
                    name.unwrap_or("<missing>")
                ))
            }
        }
        _ => Err("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'".into()),
    }
}

fn citations_enabled(messages: Option<&Value>) -> bool {
    messages
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| {
            b.get("citations")
                .and_then(|c| c.get("enabled"))
                .and_then(Value::as_bool)
                == Some(true)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"model": "claude-haiku-4-5", "max_tokens": 16,
               "messages": [{"role": "user", "content": "Hello"}]})
    }

    fn err(mut p: Value, edit: impl FnOnce(&mut Value), mode: Mode) -> String {
        edit(&mut p);
        validate(&p, mode).expect_err("should be invalid")
    }

    #[test]
    fn accepts_good_params() {
        validate(&ok(), Mode::Batch).unwrap();
        validate(&ok(), Mode::Messages).unwrap();
        let mut p = ok();
        p["system"] = json!([{"type": "text", "text": "sys"}]);
        p["temperature"] = json!(0);
        p["output_config"] =
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}});
        p["messages"] = json!([{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AAAA"}}]}]);
        validate(&p, Mode::Batch).unwrap();
        let mut c = ok();
        c.as_object_mut().unwrap().remove("max_tokens");
        validate(&c, Mode::CountTokens).unwrap();
    }

    #[test]
    fn rejects_bad_params() {
        let b = Mode::Batch;
        let rm = |k: &'static str| move |p: &mut Value| drop(p.as_object_mut().unwrap().remove(k));
        assert_eq!(err(ok(), rm("model"), b), "model: Field required");
        assert_eq!(err(ok(), rm("max_tokens"), b), "max_tokens: Field required");
        assert!(err(ok(), |p| p["max_tokens"] = json!(0), b).starts_with("max_tokens"));
        assert!(err(ok(), |p| p["model"] = json!(3), b).starts_with("model"));
        assert!(err(ok(), |p| p["messages"] = json!([]), b).starts_with("messages"));
        assert_eq!(
            err(ok(), |p| p["messages"][0]["role"] = json!("system"), b),
            "messages.0.role: Input should be 'user' or 'assistant'"
        );
        assert!(err(ok(), |p| p["stream"] = json!(true), b).starts_with("stream"));
        assert!(err(ok(), |p| p["temperature"] = json!(1.5), b).starts_with("temperature"));
        assert!(err(ok(), |p| p["bogus"] = json!(1), b).starts_with("bogus"));
        assert!(err(ok(), |p| p["speed"] = json!("fast"), b).starts_with("speed"));
        assert!(err(ok(), |p| p["messages"][0]["content"] = json!(""), b).contains("non-empty"));
        assert!(
            err(
                ok(),
                |p| p["messages"][0]["content"] = json!([{"type": "image"}]),
                b
            )
            .starts_with("messages.0.content.0.source")
        );
        assert!(
            err(
                ok(),
                |p| p["tool_choice"] = json!({"type": "tool", "name": "x"}),
                b
            )
            .starts_with("tool_choice")
        );
        assert!(
            err(
                ok(),
                |p| p["output_config"] = json!({"format": {"type": "json"}}),
                b
            )
            .starts_with("output_config.format.type")
        );
        assert!(
            validate(&ok(), Mode::CountTokens)
                .unwrap_err()
                .starts_with("max_tokens")
        );
        assert!(validate(&json!([1]), b).is_err());
    }
}
