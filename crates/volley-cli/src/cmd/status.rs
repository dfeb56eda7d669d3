//! `volley status` and `volley list`.
use serde_json::json;

use crate::cli::{ListArgs, StatusArgs};
use crate::exit::Code;
use crate::output;

pub(crate) async fn status(args: StatusArgs) -> Code {
    let volley = match super::open_store(args.store.store).await {
        Ok(volley) => volley,
        Err(code) => return code,
    };
    let status = match &args.run {
        Some(run) => volley.status(run).await,
        None => match volley.list().await {
            Ok(runs) => match runs.into_iter().next() {
                Some(status) => Ok(status),
                None => {
                    output::error("no runs yet; start one with `volley run INPUT.jsonl`");
                    return Code::Usage;
                }
            },
            Err(e) => Err(e),
        },
    };
    match status {
        Ok(status) if args.json => {
            output::json(&status);
            Code::Success
        }
        Ok(status) => {
            output::info(&output::status_text(&status));
            Code::Success
        }
        Err(e) => {
            output::error(&e.to_string());
            Code::Usage
        }
    }
}

pub(crate) async fn list(args: ListArgs) -> Code {
    let volley = match super::open_store(args.store.store).await {
        Ok(volley) => volley,
        Err(code) => return code,
    };
    match volley.list().await {
        Ok(runs) if args.json => {
            output::json(&json!({ "runs": runs }));
            Code::Success
        }
        Ok(runs) => {
            if runs.is_empty() {
                output::info("no runs yet");
            }
            for run in runs {
                output::info(&format!(
                    "{}  {:<11}  {:>7}/{:<7} done  ${:.6}  {}",
                    run.id,
                    run.status.as_str(),
                    run.counts.done(),
                    run.counts.total,
                    run.cost_usd,
                    run.input.as_deref().unwrap_or("-"),
                ));
            }
            Code::Success
        }
        Err(e) => {
            output::error(&e.to_string());
            Code::Usage
        }
    }
}
