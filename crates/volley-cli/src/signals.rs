//! Ctrl-C and SIGTERM: the first stops new submissions and saves state; the second exits now.
use tokio_util::sync::CancellationToken;

use crate::{exit, output};

/// Cancels `token` on the first signal; exits with 130 on the second.
pub(crate) fn install(token: CancellationToken, run_id: String) {
    tokio::spawn(async move {
        wait_for_signal().await;
        output::info(&format!(
            "\nstopping: no new batches will be submitted; batches already at the provider keep running.\n  continue later with: volley resume {run_id}\n  press Ctrl-C again to exit at once"
        ));
        token.cancel();
        wait_for_signal().await;
        output::info("exiting now; state is saved");
        std::process::exit(exit::Code::Interrupted as i32);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
