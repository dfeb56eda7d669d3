//! Gemini batchGenerateContent (provider-apis.md §C). Being written.
