use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request, normalised from any accepted input format and ready for a provider adapter.
///
/// `model` is the provider's model id (a `provider/` prefix has already been resolved away).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The user's id, unique within a run; results carry it back.
    pub id: String,
    /// The provider's model id.
    pub model: String,
    /// The conversation; the last message is normally from the user.
    pub messages: Vec<Message>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Upper bound on output tokens (also the worst case used for cost reservations).
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// JSON Schema the answer must follow (structured output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Ask the provider for citations on attached documents.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub citations: bool,
    /// Free-form user metadata, copied to the result line untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (the prompt).
    User,
    /// The model (a prior answer, for few-shot or multi-turn input).
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its parts, in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A user message holding one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![Part::Text { text: text.into() }],
        }
    }
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A document (PDF or plain text), inlined as base64.
    Document {
        /// MIME type, e.g. `application/pdf`.
        media_type: String,
        /// Base64 of the file's bytes.
        data: String,
        /// The file name, shown to the model as the document title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An image, inlined as base64.
    Image {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64 of the file's bytes.
        data: String,
    },
}
