//! Writes the synthetic input of `bench/run` (see bench/README.md): N requests as volley JSONL,
//! from the same generator as `plan_bench`.
//!
//! ```text
//! cargo run --release -p volley --example bench_input -- N OUT.jsonl                # three providers, as plan_bench
//! cargo run --release -p volley --example bench_input -- N OUT.jsonl CLAUDE GPT     # two models, plain text
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_input N OUT.jsonl [CLAUDE_MODEL GPT_MODEL]";
    let (n, out, mix) = match args.as_slice() {
        [n, out] => (n, out, synthetic::Mix::ThreeProviders),
        [n, out, claude, gpt] => (
            n,
            out,
            synthetic::Mix::TwoModels {
                claude: claude.clone(),
                gpt: gpt.clone(),
            },
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(1);
        }
    };
    let n: u64 = n.parse().unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(1);
    });
    let out = PathBuf::from(out);
    match synthetic::write_input(&out, n, &mix) {
        Ok(bytes) => println!("{n} requests, {bytes} bytes, {}", out.display()),
        Err(e) => {
            eprintln!("cannot write {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
