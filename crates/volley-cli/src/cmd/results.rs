//! `volley results`: the result lines stored so far, in input order.
use crate::cli::ResultsArgs;
use crate::exit::Code;
use crate::output;

pub(crate) async fn results(args: ResultsArgs) -> Code {
    let volley = match super::open_store(args.store.store).await {
        Ok(volley) => volley,
        Err(code) => return code,
    };
    let run = match volley.run(&args.run).await {
        Ok(run) => run,
        Err(e) => {
            output::error(&e.to_string());
            return Code::Usage;
        }
    };
    let written = match &args.out {
        Some(path) => volley.write_results(&run.id, path).await,
        None => {
            let mut out = output::StdoutStream::new();
            let written = volley.copy_results(&run.id, &mut out).await;
            let _ = std::io::Write::flush(&mut out);
            written
        }
    };
    match written {
        Ok(n) => {
            if n < run.total {
                output::info(&format!(
                    "{n} of {} requests have results so far (run is {})",
                    run.total,
                    run.state.as_str()
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
