//! `volley models`: the catalog with batch prices.
use volley::{Catalog, Mode, Usage};

use crate::cli::ModelsArgs;
use crate::exit::Code;
use crate::output;

pub(crate) fn models(args: &ModelsArgs) -> Code {
    let catalog = Catalog::builtin();
    let profiles = volley::profiles();
    if args.json {
        output::json(
            &serde_json::json!({ "models": catalog.models(), "openai_compatible_profiles": profiles }),
        );
        return Code::Success;
    }
    output::info(&format!(
        "{:<26} {:<10} {:>12} {:>12} {:>10} {:>10}",
        "model", "provider", "batch in/M", "batch out/M", "context", "max out"
    ));
    let per_million = |input: u64, output: u64, model: &volley::ModelEntry| {
        let usage = Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        };
        catalog.cost(model.provider, &model.id, &usage, Mode::Batch)
    };
    for model in catalog.models() {
        output::info(&format!(
            "{:<26} {:<10} {:>12} {:>12} {:>10} {:>10}",
            model.id,
            model.provider.as_str(),
            format!("${:.3}", per_million(1_000_000, 0, model)),
            format!("${:.3}", per_million(0, 1_000_000, model)),
            model.context_window,
            model.max_output
        ));
    }
    output::info(
        "\nOpenAI-compatible batch servers (--openai-profile NAME; models as openai/MODEL):",
    );
    for (name, p) in &profiles {
        output::info(&format!(
            "  {name:<10} {}  key ${}  max {} per batch  (checked {}: {})",
            p.base_url,
            p.key_env,
            p.max_bytes_per_batch
                .map_or_else(|| "?".to_owned(), |b| format!("{} MB", b / 1_000_000)),
            p.checked,
            p.source
        ));
    }
    Code::Success
}
