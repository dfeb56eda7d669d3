//! OpenAI Files + Batches (provider-apis.md §B). Being written.
