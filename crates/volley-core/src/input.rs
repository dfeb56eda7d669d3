//! The input stage: JSONL in (DESIGN.md §3.1), validated [`Request`]s out.
//!
//! [`InputReader`] streams a file line by line, so memory stays flat however large the input;
//! every problem names the line and the field. Callers run it once to validate everything
//! before anything is submitted, then again to import (`volley run` does exactly that).
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use volley_types::{Message, Part, ProviderKind, Request, Role};

use crate::catalog::Catalog;
use crate::custom_id::{self, Fnv1a};

/// Longest accepted input line: the providers' per-request limit (Anthropic: 32 MB).
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;
/// `max_tokens` when neither the line nor the options give one.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// How to read an input file.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Model for lines that name none (`--model`).
    pub default_model: Option<String>,
    /// `max_tokens` for lines that give none.
    pub default_max_tokens: Option<u32>,
    /// Read attached files (`false` only checks they exist: the validation pass).
    pub load_files: bool,
    /// The same content already passed [`validate`]: ids are not checked for uniqueness again
    /// (the table takes ~17 bytes a request), and the reader hashes what it reads instead, so
    /// the caller can prove it read the content that was validated
    /// ([`InputReader::content_hash`]).
    pub ids_validated: bool,
}

/// One validated request with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    /// 1-based line number in the input file.
    pub line: usize,
    /// The provider that will run it.
    pub provider: ProviderKind,
    /// The id sent to the provider.
    pub custom_id: String,
    /// The request.
    pub request: Request,
}

/// A problem with the input, naming the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// 1-based line number; 0 for the file as a whole.
    pub line: usize,
    /// The field at fault (`messages[0].content`), when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}", self.line)?;
        } else {
            f.write_str("input")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

impl InputError {
    pub(crate) fn at(
        line: usize,
        field: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    fn field(line: usize, field: &str, message: impl Into<String>) -> Self {
        Self::at(line, Some(field.to_owned()), message)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(default)]
    id: Option<IdValue>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<InputMessage>>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    citations: bool,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputMessage {
    role: Role,
    content: InputContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InputContent {
    Text(String),
    Parts(Vec<InputPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum InputPart {
    Text { text: String },
    File { path: String },
}

/// Streams and validates an input file.
pub struct InputReader<'c, R> {
    reader: R,
    base_dir: PathBuf,
    catalog: &'c Catalog,
    options: InputOptions,
    line: usize,
    buf: Vec<u8>,
    // Hashes of the custom ids seen so far → their line, with `AS_IS` when that line's id is
    // its own custom id. Equal ids make equal custom ids, so this one table finds repeated ids
    // too (a million requests: 2^21 slots of 17 bytes, ~36 MB); with 64-bit hashes a false
    // duplicate needs ~4 billion ids.
    seen: HashMap<u64, u32>,
    hasher: BuildHasherDefault<DefaultHasher>,
    // FNV-1a of every byte read, when `options.ids_validated`.
    content: Option<Fnv1a>,
}

/// Set in a `seen` entry when the line's id was sent as is; the other 31 bits are the line.
const AS_IS: u32 = 1 << 31;

impl<'c> InputReader<'c, BufReader<File>> {
    /// Opens `path`; attached files are resolved relative to its folder.
    pub fn open(
        path: &Path,
        catalog: &'c Catalog,
        options: InputOptions,
    ) -> Result<Self, InputError> {
        let file = File::open(path)
            .map_err(|e| InputError::at(0, None, format!("cannot open {}: {e}", path.display())))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(InputError::at(
                0,
                None,
                format!("{} is a folder, not a JSONL file", path.display()),
            ));
        }
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Self::new(
            BufReader::with_capacity(256 * 1024, file),
            base_dir,
            catalog,
            options,
        ))
    }
}

impl<'c, R: BufRead> InputReader<'c, R> {
    /// Reads JSONL from `reader`; attached files are resolved relative to `base_dir`.
    pub fn new(reader: R, base_dir: PathBuf, catalog: &'c Catalog, options: InputOptions) -> Self {
        Self {
            reader,
            base_dir,
            catalog,
            line: 0,
            buf: Vec::new(),
            seen: HashMap::new(),
            hasher: BuildHasherDefault::default(),
            content: options.ids_validated.then(Fnv1a::default),
            options,
        }
    }

    /// FNV-1a of every byte read so far (the whole content once the reader is exhausted) —
    /// the file half of a run's fingerprint; `None` unless `ids_validated`.
    pub fn content_hash(&self) -> Option<u64> {
        self.content.map(|hash| hash.finish())
    }

    /// Refuses an id used before, or one whose custom id another id already maps to. Which of
    /// the two a clash is follows from whether each id was sent as is: both were, or neither
    /// (the custom id then ends in a hash of the id), means the same id twice.
    fn check_unique(&mut self, line: usize, id: &str, custom_id: &str) -> Result<(), InputError> {
        // Lines past 2^31 (no real input) share one entry; their duplicates still show.
        let at = u32::try_from(line).map_or(AS_IS - 1, |l| l.min(AS_IS - 1));
        let as_is = id == custom_id;
        let entry = match self.seen.entry(self.hasher.hash_one(custom_id)) {
            Entry::Vacant(slot) => {
                slot.insert(if as_is { at | AS_IS } else { at });
                return Ok(());
            }
            Entry::Occupied(entry) => *entry.get(),
        };
        let first = entry & !AS_IS;
        let message = if (entry & AS_IS != 0) == as_is {
            format!("duplicate id `{id}` (first used on line {first})")
        } else {
            format!(
                "id `{id}` maps to provider id `{custom_id}`, already used by line {first}; rename one"
            )
        };
        Err(InputError::field(line, "id", message))
    }

    /// The error of a line that does not parse, with the field it is in when there is one.
    fn locate(line: usize, text: &str, plain: &serde_json::Error) -> InputError {
        let mut de = serde_json::Deserializer::from_str(text);
        let tracked = serde_path_to_error::deserialize::<_, InputLine>(&mut de)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                InputError::at(line, field, clean_serde_message(&e.inner().to_string()))
            })
            .and_then(|_| {
                de.end()
                    .map_err(|e| InputError::at(line, None, clean_serde_message(&e.to_string())))
            });
        // Both parses follow the same rules; the plain error stands if they ever disagree.
        tracked
            .err()
            .unwrap_or_else(|| InputError::at(line, None, clean_serde_message(&plain.to_string())))
    }

    fn parse_line(&mut self, line: usize, text: &str) -> Result<InputRequest, InputError> {
        // Tracking the path costs on every field of every line, and only an error needs it:
        // a line that parses is parsed once, a bad one again to say where it went wrong.
        let raw: InputLine = match serde_json::from_str(text) {
            Ok(raw) => raw,
            Err(plain) => return Err(Self::locate(line, text, &plain)),
        };

        let id = match raw.id {
            Some(IdValue::Text(s)) if s.is_empty() => {
                return Err(InputError::field(line, "id", "must not be empty"));
            }
            Some(IdValue::Text(s)) => s,
            Some(IdValue::Number(n)) => n.to_string(),
            None => format!("line-{line}"),
        };
        let custom_id = custom_id::derive(&id);
        if !self.options.ids_validated {
            self.check_unique(line, &id, &custom_id)?;
        }

        let model_name = raw
            .model
            .or_else(|| self.options.default_model.clone())
            .ok_or_else(|| {
                InputError::field(
                    line,
                    "model",
                    "missing (give it on the line or with --model)",
                )
            })?;
        let resolved = self
            .catalog
            .resolve(&model_name)
            .map_err(|e| InputError::field(line, "model", e.to_string()))?;
        let max_output = resolved.entry.map(|e| e.max_output);

        let max_tokens = raw
            .max_tokens
            .or(self.options.default_max_tokens)
            .unwrap_or_else(|| {
                max_output.map_or(DEFAULT_MAX_TOKENS, |m| m.min(DEFAULT_MAX_TOKENS))
            });
        if max_tokens == 0 {
            return Err(InputError::field(line, "max_tokens", "must be at least 1"));
        }
        if let Some(max) = max_output
            && max_tokens > max
        {
            return Err(InputError::field(
                line,
                "max_tokens",
                format!(
                    "{max_tokens} is more than {} allows ({max})",
                    resolved.model
                ),
            ));
        }
        if let Some(t) = raw.temperature {
            let max = if resolved.provider == ProviderKind::Anthropic {
                1.0
            } else {
                2.0
            };
            if !(0.0..=max).contains(&t) {
                return Err(InputError::field(
                    line,
                    "temperature",
                    format!("{t} is outside 0..={max} for {}", resolved.provider),
                ));
            }
        }
        if let Some(schema) = &raw.schema
            && !schema.is_object()
        {
            return Err(InputError::field(
                line,
                "schema",
                "must be a JSON Schema object",
            ));
        }

        let mut messages = match (raw.prompt, raw.messages) {
            (Some(_), Some(_)) => {
                return Err(InputError::field(
                    line,
                    "prompt",
                    "give either `prompt` or `messages`, not both",
                ));
            }
            (None, None) => {
                return Err(InputError::field(
                    line,
                    "prompt",
                    "missing (or give `messages`)",
                ));
            }
            (Some(prompt), None) => {
                if prompt.trim().is_empty() {
                    return Err(InputError::field(line, "prompt", "must not be empty"));
                }
                vec![Message::user(prompt)]
            }
            (None, Some(messages)) => self.convert_messages(line, messages)?,
        };

        if !raw.files.is_empty() {
            let mut parts = Vec::with_capacity(raw.files.len());
            for (i, file) in raw.files.iter().enumerate() {
                parts.push(self.load_file(line, &format!("files[{i}]"), file)?);
            }
            // Documents go before the question, as providers recommend.
            let last_user = messages
                .iter_mut()
                .rev()
                .find(|m| m.role == Role::User)
                .ok_or_else(|| {
                    InputError::field(line, "files", "needs a user message to attach to")
                })?;
            parts.append(&mut last_user.content);
            last_user.content = parts;
        }
        if raw.citations
            && !messages
                .iter()
                .flat_map(|m| &m.content)
                .any(|p| matches!(p, Part::Document { .. }))
        {
            return Err(InputError::field(
                line,
                "citations",
                "citations need at least one document in `files`",
            ));
        }
        if raw.citations && raw.schema.is_some() {
            return Err(InputError::field(
                line,
                "citations",
                "citations and `schema` cannot be combined (providers reject it)",
            ));
        }

        Ok(InputRequest {
            line,
            provider: resolved.provider,
            custom_id,
            request: Request {
                id,
                model: resolved.model,
                messages,
                system: raw.system,
                max_tokens,
                temperature: raw.temperature,
                schema: raw.schema,
                citations: raw.citations,
                metadata: raw.metadata,
            },
        })
    }

    fn convert_messages(
        &self,
        line: usize,
        messages: Vec<InputMessage>,
    ) -> Result<Vec<Message>, InputError> {
        if messages.is_empty() {
            return Err(InputError::field(line, "messages", "must not be empty"));
        }
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            let content = match m.content {
                InputContent::Text(text) => vec![Part::Text { text }],
                InputContent::Parts(parts) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, part) in parts.into_iter().enumerate() {
                        out.push(match part {
                            InputPart::Text { text } => Part::Text { text },
                            InputPart::File { path } => self.load_file(
                                line,
                                &format!("messages[{i}].content[{j}].path"),
                                &path,
                            )?,
                        });
                    }
                    out
                }
            };
            if content.is_empty() {
                return Err(InputError::field(
                    line,
                    &format!("messages[{i}].content"),
                    "must not be empty",
                ));
            }
            out.push(Message {
                role: m.role,
                content,
            });
        }
        if out.first().is_some_and(|m| m.role != Role::User) {
            return Err(InputError::field(
                line,
                "messages[0].role",
                "the first message must come from the user",
            ));
        }
        Ok(out)
    }

    fn load_file(&self, line: usize, field: &str, name: &str) -> Result<Part, InputError> {
        let path = self.base_dir.join(name);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let media_type = match ext.as_str() {
            "pdf" => "application/pdf",
            "txt" | "md" | "csv" | "json" | "html" | "xml" => "text/plain",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "webp" => "image/webp",
            _ => {
                return Err(InputError::field(
                    line,
                    field,
                    format!(
                        "{name}: unsupported file type (pdf, txt, md, csv, json, html, xml, png, jpg, gif, webp)"
                    ),
                ));
            }
        };
        let meta = std::fs::metadata(&path).map_err(|e| {
            InputError::field(line, field, format!("cannot read {}: {e}", path.display()))
        })?;
        if !meta.is_file() {
            return Err(InputError::field(
                line,
                field,
                format!("{} is not a file", path.display()),
            ));
        }
        let data = if self.options.load_files {
            let bytes = std::fs::read(&path).map_err(|e| {
                InputError::field(line, field, format!("cannot read {}: {e}", path.display()))
            })?;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        } else {
            String::new()
        };
        let media_type = media_type.to_owned();
        Ok(if media_type.starts_with("image/") {
            Part::Image { media_type, data }
        } else {
            Part::Document {
                media_type,
                data,
                name: Some(name.to_owned()),
            }
        })
    }
}

impl<R: BufRead> Iterator for InputReader<'_, R> {
    type Item = Result<InputRequest, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            let line = self.line;
            let limit = MAX_LINE_BYTES as u64 + 1;
            let read =
                std::io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => return None,
                Ok(_) => {
                    if let Some(hash) = &mut self.content {
                        hash.write(&self.buf);
                    }
                }
                Err(e) => return Some(Err(InputError::at(line, None, format!("read error: {e}")))),
            }
            if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
                // Skip the rest of the oversized line so the next one is read correctly.
                let mut sink = Vec::new();
                let _ = self.reader.read_until(b'\n', &mut sink);
                if let Some(hash) = &mut self.content {
                    hash.write(&sink);
                }
                return Some(Err(InputError::at(
                    line,
                    None,
                    format!("line is longer than {} MiB", MAX_LINE_BYTES / 1024 / 1024),
                )));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text,
                Err(e) => {
                    return Some(Err(InputError::at(
                        line,
                        None,
                        format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
                    )));
                }
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let text = text.to_owned();
            return Some(self.parse_line(line, &text));
        }
    }
}

/// serde's messages end with "at line 1 column 7": the column helps, the line is ours.
fn clean_serde_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => {
            let (head, tail) = message.split_at(i);
            let column = tail.rsplit(' ').next().unwrap_or("");
            format!("{head} (column {column})")
        }
        None => message.to_owned(),
    }
}

/// What a validation pass found.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Valid requests.
    pub requests: u64,
    /// Valid requests per provider and model.
    pub groups: std::collections::BTreeMap<(ProviderKind, String), u64>,
    /// Problems, in line order (at most `limit`).
    pub errors: Vec<InputError>,
    /// Problems found in all, including those past `limit`.
    pub error_count: u64,
}

/// Where input comes from: a file, or JSONL built in memory by the library.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A JSONL file; attached files resolve relative to its folder.
    File(PathBuf),
    /// JSONL bytes; attached files resolve relative to `base_dir`.
    Memory {
        /// The JSONL.
        jsonl: std::sync::Arc<Vec<u8>>,
        /// Folder for relative file paths.
        base_dir: PathBuf,
    },
}

impl InputSource {
    /// A streaming reader over the source.
    pub fn reader<'c>(
        &self,
        catalog: &'c Catalog,
        options: InputOptions,
    ) -> Result<InputReader<'c, Box<dyn BufRead + Send>>, InputError> {
        match self {
            Self::File(path) => {
                let reader = InputReader::open(path, catalog, options)?;
                Ok(InputReader::new(
                    Box::new(reader.reader) as Box<dyn BufRead + Send>,
                    reader.base_dir,
                    catalog,
                    reader.options,
                ))
            }
            Self::Memory { jsonl, base_dir } => Ok(InputReader::new(
                Box::new(std::io::Cursor::new(SharedBytes(jsonl.clone()))),
                base_dir.clone(),
                catalog,
                options,
            )),
        }
    }

    /// FNV-1a of the whole content (a file is streamed): what [`crate::import::import`] checks
    /// that it read, and the content half of a run's fingerprint.
    pub fn content_hash(&self) -> std::io::Result<u64> {
        match self {
            Self::File(path) => {
                let mut file = File::open(path)?;
                let mut hash = Fnv1a::default();
                let mut buf = vec![0; 1 << 16];
                loop {
                    match std::io::Read::read(&mut file, &mut buf) {
                        Ok(0) => return Ok(hash.finish()),
                        Ok(n) => hash.write(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Self::Memory { jsonl, .. } => Ok(custom_id::fnv1a(jsonl)),
        }
    }

    /// How the source is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Memory { .. } => "requests".to_owned(),
        }
    }
}

/// `Arc<Vec<u8>>` as a byte slice, so a cursor can read shared bytes without copying.
#[derive(Debug, Clone)]
struct SharedBytes(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Reads the whole input once, checking everything and loading nothing.
pub fn validate(
    source: &InputSource,
    catalog: &Catalog,
    options: &InputOptions,
    limit: usize,
) -> Result<Validation, InputError> {
    let options = InputOptions {
        load_files: false,
        ids_validated: false,
        ..options.clone()
    };
    let mut validation = Validation::default();
    for item in source.reader(catalog, options)? {
        match item {
            Ok(item) => {
                validation.requests += 1;
                *validation
                    .groups
                    .entry((item.provider, item.request.model))
                    .or_default() += 1;
            }
            Err(e) => {
                validation.error_count += 1;
                if validation.errors.len() < limit {
                    validation.errors.push(e);
                }
            }
        }
    }
    if validation.requests == 0 && validation.error_count == 0 {
        validation.error_count = 1;
        validation.errors.push(InputError::at(
            0,
            None,
            format!("{} holds no requests", source.describe()),
        ));
    }
    Ok(validation)
}

#[cfg(test)]
mod tests;
