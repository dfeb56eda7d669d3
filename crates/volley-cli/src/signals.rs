//! Ctrl-C and SIGTERM: the first stops new submissions and saves state (or, with
//! `--cancel-on-exit`, cancels the run's batches); the second exits now.
use tokio_util::sync::CancellationToken;

use crate::{exit, output};

/// What the first signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnSignal {
    /// Stop submitting; batches at the provider keep running (`volley resume`).
    Stop,
    /// Stop submitting and cancel the run's batches at the provider (`--cancel-on-exit`).
    CancelRun,
    /// Stop waiting for cancelled batches to end (`volley cancel`).
    StopCancel,
}

/// Cancels `token` on the first signal; exits with 130 on the second.
pub(crate) fn install(token: CancellationToken, run_id: String, on_signal: OnSignal) {
    tokio::spawn(async move {
        wait_for_signal().await;
        output::info(&match on_signal {
            OnSignal::Stop => format!(
                "\nstopping: no new batches will be submitted; batches already at the provider keep running.\n  continue later with: volley resume {run_id}\n  press Ctrl-C again to exit at once"
            ),
            OnSignal::CancelRun => format!(
                "\nstopping (--cancel-on-exit): nothing more is submitted, and the run's batches are canceled at the provider; answers they already gave are kept.\n  press Ctrl-C again to exit at once (finish later with: volley cancel {run_id})"
            ),
            OnSignal::StopCancel => format!(
                "\nno longer waiting: the cancelled batches end at the provider on their own.\n  collect them later with: volley cancel {run_id}\n  press Ctrl-C again to exit at once"
            ),
        });
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
