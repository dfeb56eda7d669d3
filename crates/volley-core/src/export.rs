//! Writing `results.jsonl`: streamed from the store in input order, replaced atomically.
use std::io::Write;
use std::path::Path;

use crate::store::Store;

/// Errors while writing results.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

const PAGE: u64 = 10_000;

/// Streams every stored result line of `run_id`, in input order, to `out`.
pub async fn write_results(
    store: &dyn Store,
    run_id: &str,
    out: &mut (dyn Write + Send),
) -> Result<u64, ExportError> {
    write_results_and_pass(store, run_id, out, &mut |_| {}).await
}

/// [`write_results`], handing each page of lines to `written` once it is written, so a caller
/// can add them up (on another thread) without reading the file again.
pub async fn write_results_and_pass(
    store: &dyn Store,
    run_id: &str,
    out: &mut (dyn Write + Send),
    written: &mut (dyn FnMut(Vec<String>) + Send),
) -> Result<u64, ExportError> {
    let mut after = None;
    let mut count = 0;
    loop {
        let page = store.results(run_id, after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (_, line) in &page {
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|source| ExportError::Io {
                    path: "output".into(),
                    source,
                })?;
            count += 1;
        }
        written(page.into_iter().map(|(_, line)| line).collect());
    }
    Ok(count)
}

/// Writes `results.jsonl` at `path` atomically: a temporary file in the same folder, synced,
/// renamed over the target, then the folder synced. Readers see the old file or the new one.
pub async fn write_results_file(
    store: &dyn Store,
    run_id: &str,
    path: &Path,
    written: &mut (dyn FnMut(Vec<String>) + Send),
) -> Result<u64, ExportError> {
    let io_err = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let count = write_results_and_pass(store, run_id, &mut writer, written).await?;
    let tmp = writer.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    if let Ok(dir) = std::fs::File::open(dir) {
        // Makes the rename durable; not every platform can sync a folder, so ignore failure.
        let _ = dir.sync_all();
    }
    Ok(count)
}
