//! Synthetic volley input (JSONL, docs/input.md) for the benchmarks of `bench/`: one generator,
//! shared by `plan_bench` (import and plan in process) and `bench_input` (files for `bench/run`,
//! which drives the `volley` binary and batchata with them). Each example uses part of it.
#![allow(dead_code)]

use std::io::{BufWriter, Write};
use std::path::Path;

const REVIEWS: [&str; 6] = [
    "the parcel arrived two days late and the box was crushed, but the kettle inside works fine",
    "excellent support: they answered within an hour and replaced the broken lid for free",
    "battery life is half of what the listing promised; returning it",
    "does exactly what it says, nothing more, nothing less",
    "the colour is different from the photos and the strap feels cheap",
    "bought a second one for my parents, they love it",
];

/// Which requests to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mix {
    /// Three providers (60% Claude, 25% GPT, 15% Gemini, catalog models); a fifth carry a
    /// system prompt and an output schema (max_tokens 32), the others max_tokens 64.
    ThreeProviders,
    /// Two models, 60% `claude` and 40% `gpt` (written as given, e.g. a forced
    /// `anthropic/claude-3-5-haiku-20241022`); a fifth carry a system prompt (max_tokens 32),
    /// the others max_tokens 64; temperature 0 (batch clients that always send one send the
    /// same); no schema. Every request is plain text that any batch client
    /// can send as is (bench/run gives the same file to batchata).
    TwoModels {
        /// Model of 60% of the requests.
        claude: String,
        /// Model of the other 40%.
        gpt: String,
    },
}

/// Writes `n` requests to `path`; returns the file's size in bytes.
pub(crate) fn write_input(path: &Path, n: u64, mix: &Mix) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for i in 0..n {
        let review = REVIEWS[(i % 6) as usize];
        match mix {
            Mix::ThreeProviders => {
                let model = match i % 20 {
                    0..=11 => "claude-haiku-4-5",
                    12..=16 => "gpt-4o-mini",
                    _ => "gemini-2.5-flash",
                };
                if i % 5 == 0 {
                    writeln!(
                        out,
                        r#"{{"id":"r{i}","model":"{model}","system":"You label product reviews. Answer only with JSON.","prompt":"Label review {i}: {review}","schema":{{"type":"object","properties":{{"sentiment":{{"type":"string","enum":["positive","neutral","negative"]}}}},"required":["sentiment"]}},"max_tokens":32}}"#
                    )?;
                } else {
                    writeln!(
                        out,
                        r#"{{"id":"r{i}","model":"{model}","prompt":"Classify the sentiment of review {i}: {review}","max_tokens":64}}"#
                    )?;
                }
            }
            Mix::TwoModels { claude, gpt } => {
                let model = if i % 20 < 12 { claude } else { gpt };
                if i % 5 == 0 {
                    writeln!(
                        out,
                        r#"{{"id":"r{i}","model":"{model}","system":"You label product reviews. Answer with one word: positive, neutral or negative.","prompt":"Label review {i}: {review}","temperature":0,"max_tokens":32}}"#
                    )?;
                } else {
                    writeln!(
                        out,
                        r#"{{"id":"r{i}","model":"{model}","prompt":"Classify the sentiment of review {i}: {review}","temperature":0,"max_tokens":64}}"#
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
