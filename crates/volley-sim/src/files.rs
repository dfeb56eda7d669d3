//! Files of the OpenAI Files API and the Gemini Files API: uploaded bytes, or result files
//! generated line by line from a batch's compact records (never materialized), plus Gemini's
//! resumable upload sessions.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::hash::{mix2, mix64, parse_base62, push_base36, push_base62};

/// Size at which a generated file's chunk is flushed to the client.
const CHUNK: usize = 64 * 1024;

/// Which API a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileApi {
    /// `/v1/files` (OpenAI).
    OpenAi,
    /// `/{v1,v1beta}/files` (Gemini).
    Gemini,
}

/// A file the simulator holds, as [`crate::Simulator::files`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFile {
    /// Which API it belongs to.
    pub api: FileApi,
    /// Its id as the API names it: `file-...` (OpenAI) or `files/...` (Gemini).
    pub id: String,
    /// OpenAI `filename`, Gemini `displayName`.
    pub name: String,
    /// OpenAI `purpose` (`batch`, `batch_output`, ...); empty for Gemini.
    pub purpose: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Whether the simulator generated it (batch results) rather than a client uploading it.
    pub generated: bool,
}

/// The lines of a generated file, rendered on demand.
pub(crate) trait Lines: Send + Sync + std::fmt::Debug {
    /// Number of lines.
    fn count(&self) -> usize;
    /// Appends line `pos` (with its newline).
    fn write(&self, pos: usize, out: &mut Vec<u8>);
}

/// A generated file: its lines and (once computed) its size.
#[derive(Debug)]
pub(crate) struct Generated {
    lines: Arc<dyn Lines>,
    size: OnceLock<u64>,
}

impl Generated {
    pub(crate) fn new(lines: Arc<dyn Lines>) -> Arc<Self> {
        Arc::new(Self {
            lines,
            size: OnceLock::new(),
        })
    }

    /// The size in bytes (rendered once, then remembered). Call it outside the state lock.
    pub(crate) fn size(&self) -> u64 {
        *self.size.get_or_init(|| {
            let mut total = 0u64;
            let mut buf = Vec::with_capacity(4096);
            for pos in 0..self.lines.count() {
                buf.clear();
                self.lines.write(pos, &mut buf);
                total += buf.len() as u64;
            }
            total
        })
    }

    /// The content, chunk by chunk.
    pub(crate) fn stream(
        self: Arc<Self>,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures::stream::unfold((self, 0usize), |(this, mut pos)| async move {
            let n = this.lines.count();
            if pos >= n {
                return None;
            }
            let mut buf = Vec::with_capacity(CHUNK + 4096);
            while pos < n && buf.len() < CHUNK {
                this.lines.write(pos, &mut buf);
                pos += 1;
            }
            Some((Ok(Bytes::from(buf)), (this, pos)))
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Content {
    Stored(Bytes),
    Generated(Arc<Generated>),
}

impl Content {
    /// The size, if known without rendering.
    pub(crate) fn known_size(&self) -> Option<u64> {
        match self {
            Content::Stored(b) => Some(b.len() as u64),
            Content::Generated(g) => g.size.get().copied(),
        }
    }

    /// The size (renders a generated file once). Call it outside the state lock.
    pub(crate) fn size(&self) -> u64 {
        match self {
            Content::Stored(b) => b.len() as u64,
            Content::Generated(g) => g.size(),
        }
    }
}

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub(crate) api: FileApi,
    pub(crate) seq: u64,
    /// OpenAI `file-...`; Gemini the id without `files/`.
    pub(crate) id: String,
    /// OpenAI `filename`; Gemini `displayName` (may be empty).
    pub(crate) name: String,
    /// OpenAI `purpose`; empty for Gemini.
    pub(crate) purpose: String,
    /// Gemini `mimeType`.
    pub(crate) mime_type: String,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) content: Content,
    /// Gemini `sha256Hash` (base64) of uploaded files.
    pub(crate) sha256: Option<String>,
}

impl FileEntry {
    pub(crate) fn generated(&self) -> bool {
        matches!(self.content, Content::Generated(_))
    }

    /// The id as the API names it.
    pub(crate) fn api_id(&self) -> String {
        match self.api {
            FileApi::OpenAi => self.id.clone(),
            FileApi::Gemini => format!("files/{}", self.id),
        }
    }
}

/// A Gemini resumable upload session.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) display_name: String,
    pub(crate) mime_type: String,
    /// `X-Goog-Upload-Header-Content-Length`, when given.
    pub(crate) declared: Option<u64>,
    /// The requested `files/{name}`, when given.
    pub(crate) name: Option<String>,
    pub(crate) data: Vec<u8>,
    /// The file made when the upload was finalized (a repeated finalize answers it again).
    pub(crate) finished: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    files: BTreeMap<u64, FileEntry>,
    by_id: HashMap<(FileApi, String), u64>,
    next_seq: u64,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
}

/// Width of the sequence number in OpenAI file ids (base 62), so list cursors survive deletes.
const OPENAI_SEQ_WIDTH: usize = 6;

impl Store {
    /// An empty store whose ids continue from this one's (so old ids never resolve again).
    pub(crate) fn emptied(&self) -> Self {
        Self {
            next_seq: self.next_seq,
            next_upload: self.next_upload,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// A new OpenAI file id (`file-` + 22 base-62 characters, the first 6 the sequence).
    fn openai_id(seq: u64, seed: u64) -> String {
        let mut id = String::from("file-");
        push_base62(&mut id, seq, OPENAI_SEQ_WIDTH);
        push_base62(&mut id, mix2(seed, seq), 11);
        push_base62(&mut id, mix64(seq ^ 0x0f11_e5ee_d000_0001), 5);
        id
    }

    /// The sequence number inside an OpenAI file id (for list cursors).
    pub(crate) fn openai_seq(id: &str) -> Option<u64> {
        let rest = id.strip_prefix("file-")?;
        parse_base62(rest.get(..OPENAI_SEQ_WIDTH)?)
    }

    /// A new Gemini file id: 12 lowercase alphanumerics.
    fn gemini_id(seq: u64, seed: u64) -> String {
        let mut id = String::new();
        push_base36(&mut id, seq, 6);
        push_base36(&mut id, mix2(seed, seq), 6);
        id
    }

    /// Adds a file; `id` is chosen unless given (Gemini names chosen by the client or
    /// `batch-...` result files). Returns the entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        api: FileApi,
        id: Option<String>,
        name: String,
        purpose: &str,
        mime_type: &str,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
        content: Content,
        sha256: Option<String>,
        seed: u64,
    ) -> &FileEntry {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = id.unwrap_or_else(|| match api {
            FileApi::OpenAi => Self::openai_id(seq, seed),
            FileApi::Gemini => Self::gemini_id(seq, seed),
        });
        self.by_id.insert((api, id.clone()), seq);
        self.files.entry(seq).or_insert(FileEntry {
            api,
            seq,
            id,
            name,
            purpose: purpose.to_owned(),
            mime_type: mime_type.to_owned(),
            created_at,
            expires_at,
            content,
            sha256,
        })
    }

    pub(crate) fn contains(&self, api: FileApi, id: &str) -> bool {
        self.by_id.contains_key(&(api, id.to_owned()))
    }

    pub(crate) fn get(&self, api: FileApi, id: &str) -> Option<&FileEntry> {
        let seq = self.by_id.get(&(api, id.to_owned()))?;
        self.files.get(seq)
    }

    pub(crate) fn remove(&mut self, api: FileApi, id: &str) -> Option<FileEntry> {
        let seq = self.by_id.remove(&(api, id.to_owned()))?;
        self.files.remove(&seq)
    }

    /// Files of `api` passing `keep`, newest first (or oldest first with `ascending`), starting
    /// after sequence number `after` (exclusive); at most `limit`, plus whether more exist.
    pub(crate) fn page(
        &self,
        api: FileApi,
        ascending: bool,
        after: Option<u64>,
        limit: usize,
        keep: impl Fn(&FileEntry) -> bool,
    ) -> (Vec<FileEntry>, bool) {
        let mut it: Box<dyn Iterator<Item = &FileEntry>> = match (ascending, after) {
            (true, None) => Box::new(self.files.values()),
            (true, Some(a)) => Box::new(self.files.range(a.saturating_add(1)..).map(|(_, f)| f)),
            (false, None) => Box::new(self.files.values().rev()),
            (false, Some(a)) => Box::new(self.files.range(..a).rev().map(|(_, f)| f)),
        };
        let mut out = Vec::new();
        let mut more = false;
        for f in it.by_ref() {
            if f.api != api || !keep(f) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(f.clone());
        }
        (out, more)
    }

    /// Every file (for [`crate::Simulator::files`]).
    pub(crate) fn all(&self) -> Vec<FileEntry> {
        self.files.values().cloned().collect()
    }

    pub(crate) fn start_upload(&mut self, upload: Upload, seed: u64) -> String {
        let n = self.next_upload;
        self.next_upload += 1;
        let mut id = String::from("ABgVH");
        push_base62(&mut id, n, 6);
        push_base62(&mut id, mix2(seed ^ 0x0075_706c_6f61_6400, n), 11);
        self.uploads.insert(id.clone(), upload);
        id
    }

    pub(crate) fn upload(&mut self, id: &str) -> Option<&mut Upload> {
        self.uploads.get_mut(id)
    }

    pub(crate) fn remove_upload(&mut self, id: &str) {
        self.uploads.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Numbers(usize);

    impl Lines for Numbers {
        fn count(&self) -> usize {
            self.0
        }
        fn write(&self, pos: usize, out: &mut Vec<u8>) {
            out.extend_from_slice(format!("{pos}\n").as_bytes());
        }
    }

    #[tokio::test]
    async fn generated_files_stream_and_size_agree() {
        use futures::StreamExt;
        let g = Generated::new(Arc::new(Numbers(20_000)));
        let size = g.size();
        let mut total = 0u64;
        let mut chunks = 0;
        let mut s = Box::pin(g.clone().stream());
        while let Some(Ok(chunk)) = s.next().await {
            total += chunk.len() as u64;
            chunks += 1;
        }
        assert_eq!(total, size);
        assert!(chunks > 1);
    }

    #[test]
    fn ids_and_pages() {
        let mut s = Store::default();
        let mut ids = Vec::new();
        for i in 0..5 {
            let api = if i == 2 {
                FileApi::Gemini
            } else {
                FileApi::OpenAi
            };
            let f = s.add(
                api,
                None,
                format!("f{i}"),
                "batch",
                "",
                Timestamp::UNIX_EPOCH,
                None,
                Content::Stored(Bytes::from_static(b"x")),
                None,
                7,
            );
            ids.push(f.id.clone());
        }
        assert!(
            ids[0].starts_with("file-") && ids[0].len() == 27,
            "{}",
            ids[0]
        );
        assert_eq!(Store::openai_seq(&ids[3]), Some(3));
        assert_eq!(ids[2].len(), 12);
        let (page, more) = s.page(FileApi::OpenAi, false, None, 2, |_| true);
        assert_eq!(
            page.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            [&ids[4], &ids[3]]
        );
        assert!(more);
        let (page, more) = s.page(FileApi::OpenAi, false, Some(3), 10, |_| true);
        assert_eq!(page.len(), 2);
        assert!(!more);
        let (page, _) = s.page(FileApi::OpenAi, true, Some(1), 10, |_| true);
        assert_eq!(page[0].id, ids[3]);
        assert!(s.remove(FileApi::OpenAi, &ids[0]).is_some());
        assert!(s.get(FileApi::OpenAi, &ids[0]).is_none());
        assert!(
            s.get(FileApi::OpenAi, &ids[2]).is_none(),
            "another API's file"
        );
        let e = s.emptied();
        assert_eq!(e.len(), 0);
        assert_eq!(e.next_seq, 5);
    }
}
