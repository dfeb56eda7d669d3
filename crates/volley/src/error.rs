use volley_core::StoreError;
use volley_core::engine::EngineError;
use volley_core::export::ExportError;
use volley_core::import::ImportError;
use volley_core::input::InputError;

/// Everything that can stop a volley call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input has problems; nothing was submitted.
    #[error("{} problem(s) in the input, nothing was submitted; first: {}", .count, .errors.first().map(ToString::to_string).unwrap_or_default())]
    Input {
        /// The first problems, in line order.
        errors: Vec<InputError>,
        /// How many problems in all.
        count: u64,
    },
    /// Configuration is missing or wrong (keys, endpoints, catalog).
    #[error("{0}")]
    Config(String),
    /// No such run.
    #[error("no run `{0}` in the store (`volley list` shows them)")]
    UnknownRun(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run stopped on an error.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing results failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Input(e) => Self::Input {
                errors: vec![e],
                count: 1,
            },
            ImportError::Store(e) => Self::Store(e),
        }
    }
}
