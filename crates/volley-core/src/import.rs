//! The import stage: a validated input file into the store, streamed in chunks.
//!
//! Parsing runs on a blocking thread and store writes on the async side, so the two overlap
//! and memory holds only a couple of chunks whatever the input size.
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::StoreError;
use crate::catalog::Catalog;
use crate::estimate;
use crate::input::{InputError, InputOptions, InputSource};
use crate::plan_estimate::worst_case_cost;
use crate::provider::{Providers, SubmissionItem};
use crate::store::{NewRequest, Store};

const CHUNK: usize = 2_000;

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is invalid (or changed since it was validated).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports every request of `source` into run `run_id` (already created); returns the count.
///
/// The source was validated before, and its ids are not checked again; `content_hash` is the
/// FNV-1a of the content that was (the file half of the run's fingerprint). Content that reads
/// differently now is refused before the import is finished, so the run is never driven.
pub async fn import(
    store: &dyn Store,
    catalog: Arc<Catalog>,
    providers: Providers,
    source: InputSource,
    options: InputOptions,
    run_id: &str,
    content_hash: u64,
) -> Result<u64, ImportError> {
    let (tx, rx) = mpsc::channel::<Result<Vec<NewRequest>, InputError>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let options = InputOptions {
            load_files: true,
            ids_validated: true,
            ..options
        };
        let read = read(&source, &catalog, &providers, options, content_hash, &tx);
        // The rest of a run counts no tokens: the encoder goes now, not when tokio ends
        // this thread.
        estimate::release_thread_counter();
        if let Err(e) = read {
            let _ = tx.blocking_send(Err(e));
        }
    });
    // Two inserts in flight: the next chunk's rows are serialized on this side while the
    // store's writer stores the one before (the two took turns, and the import was their sum).
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut inserts = std::pin::pin!(
        chunks
            .map(|chunk| async move {
                let chunk = chunk?;
                store.insert_requests(run_id, &chunk).await?;
                Ok::<u64, ImportError>(chunk.len() as u64)
            })
            .buffered(2)
    );
    let mut total = 0;
    while let Some(inserted) = inserts.next().await {
        total += inserted?;
    }
    // The reader only ends early by sending an error, which was returned above.
    let _ = reader.await;
    store.finish_import(run_id).await?;
    Ok(total)
}

/// Reads `source` into chunks for the store, on a blocking thread. `Ok` also when the
/// receiver went away (the import failed on the store side, which says why).
fn read(
    source: &InputSource,
    catalog: &Catalog,
    providers: &Providers,
    options: InputOptions,
    content_hash: u64,
    tx: &mpsc::Sender<Result<Vec<NewRequest>, InputError>>,
) -> Result<(), InputError> {
    let mut reader = source.reader(catalog, options)?;
    let mut chunk = Vec::with_capacity(CHUNK);
    for (seq, item) in reader.by_ref().enumerate() {
        let item = item?;
        let submission = SubmissionItem {
            custom_id: item.custom_id,
            request: item.request,
        };
        let wire_bytes = providers.get(item.provider).map_or_else(
            || serde_json::to_vec(&submission.request).map_or(0, |v| v.len() as u64),
            |p| p.wire_size(&submission),
        );
        chunk.push(NewRequest {
            seq: seq as u64,
            est_input_tokens: catalog.input_tokens(item.provider, &submission.request),
            worst_cost_usd: worst_case_cost(catalog, item.provider, &submission.request),
            custom_id: submission.custom_id,
            provider: item.provider,
            request: submission.request,
            wire_bytes,
        });
        if chunk.len() == CHUNK
            && tx
                .blocking_send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))))
                .is_err()
        {
            return Ok(());
        }
    }
    // Checked before the last chunk goes: the import is then never finished.
    if reader.content_hash() != Some(content_hash) {
        return Err(InputError::at(
            0,
            None,
            format!(
                "{} changed while volley read it (after it was validated); run again once nothing writes to it",
                source.describe()
            ),
        ));
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
    Ok(())
}
