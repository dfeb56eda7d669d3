//! Token counts made without a network call.
//!
//! Two different numbers, for two different jobs:
//!
//! - [`input_tokens`]: the *estimate*, used to pack batches under the enqueued-token budget,
//!   to schedule them, and by `volley estimate`. Text is counted with OpenAI's o200k_base BPE
//!   (tiktoken-rs, offline): exact for OpenAI's current models; for Claude and Gemini, whose
//!   tokenizers are not available offline, the count is multiplied by the provider's
//!   `token_factor` from the catalog. Images follow each provider's published formula from the
//!   pixel size read in the image header (PNG, JPEG, GIF, WebP; nothing is decoded); PDFs by
//!   their page count ([`pdf_pages`], read from the page tree without decoding a stream) times
//!   the provider's per-page cost ([`pdf_page_tokens`]), or from their size when the page tree
//!   cannot be read.
//! - [`input_tokens_bound`]: a *provable upper bound*, used to reserve cost against a cap.
//!   Never replace one by the other: the estimate may be low, the bound must not be.
use std::sync::{Arc, Mutex, PoisonError, Weak};

use base64::Engine as _;
use volley_types::{Part, ProviderKind, Request};

/// Tokens a PDF page costs when the provider's formula cannot be applied, roughly (Anthropic:
/// 1,500–3,000 per page; Gemini: 258 per page as an image).
pub const TOKENS_PER_PDF_PAGE_GUESS: u64 = 2_000;
/// Bytes of PDF per page when the page count cannot be read (text-heavy pages are ~3 KB).
pub const PDF_BYTES_PER_PAGE_GUESS: u64 = 3_000;
/// o200k tokens of text on a PDF page, roughly (a page of prose: ~400 words).
pub const PDF_PAGE_TEXT_TOKENS: u64 = 500;
/// A page rendered at 150 dpi (US Letter, 8.5 × 11 in), for the providers that bill each
/// page as an image.
const PDF_PAGE_PIXELS: (u64, u64) = (1275, 1650);
/// An image whose size cannot be read from its header.
pub const TOKENS_PER_IMAGE_GUESS: u64 = 1_600;

/// Per-provider framing: tokens per message (role markers) and per request (reply primer).
fn framing(provider: ProviderKind) -> (u64, u64) {
    match provider {
        // OpenAI's cookbook ("How to count tokens with tiktoken"): 3 per message, 3 to prime
        // the reply.
        ProviderKind::OpenAi => (3, 3),
        // Not published; small constants of the same order.
        ProviderKind::Anthropic => (4, 3),
        ProviderKind::Gemini => (4, 3),
    }
}

/// The o200k_base encoder, shared by the threads that hold it (see [`Counter`]): ~25 MiB,
/// ~0.2 s to load with opt-level 3. It is freed when no thread holds it any more, and loaded
/// again if one counts later.
fn encoder() -> Arc<tiktoken_rs::CoreBPE> {
    static SHARED: Mutex<Weak<tiktoken_rs::CoreBPE>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(encoder) = shared.upgrade() {
        return encoder;
    }
    let encoder =
        Arc::new(tiktoken_rs::o200k_base().expect("o200k_base is built into tiktoken-rs"));
    *shared = Arc::downgrade(&encoder);
    encoder
}

/// o200k_base tokens of `text`, exactly as `encode_ordinary(text).len()`, but fast on large
/// inputs: the text is cut before every space that sits between two non-space characters,
/// and each piece's count is remembered (per thread, at most [`MEMO_ENTRIES`] pieces).
///
/// Why the cut changes nothing: o200k_base first splits text with a regex whose every match
/// ends before such a space (letters, digits and punctuation runs never contain a space; a
/// whitespace run followed by a non-space leaves its last space to the next match) and whose
/// next match starts at that space; the only lookahead, `\s+(?!\S)`, never looks past a
/// piece because no piece ends in whitespace. BPE then merges within a match only. So the
/// token counts of the pieces add up to the count of the text (tested against the encoder).
/// Words repeat across a batch input, so most pieces are found in the memo: counting a
/// million short prompts takes about a tenth of the time of encoding them.
pub fn o200k_tokens(text: &str) -> u64 {
    COUNTER.with_borrow_mut(|counter| {
        if counter.memo.len() >= MEMO_ENTRIES {
            counter.memo.clear();
        }
        pieces(text).map(|piece| count_piece(piece, counter)).sum()
    })
}

/// Lets go of this thread's memo and its hold on the encoder (freed once no thread holds it).
/// The import calls it when it is done: a run counts tokens only while importing, and the
/// encoder is the largest thing it would otherwise keep for the rest of the run.
pub fn release_thread_counter() {
    COUNTER.take();
}

/// Tokens of one piece of [`pieces`]. Runs of ASCII digits are counted without the encoder:
/// o200k_base matches digits in groups of up to three (`\p{N}{1,3}`), never together with
/// anything else, and every group of one to three digits is one token (tested). A run is
/// cut out only where that is certain: not after whitespace (the whitespace match would then
/// end the piece before it and see a different lookahead) and not next to another numeric
/// character (which would join its groups).
fn count_piece(piece: &str, counter: &mut Counter) -> u64 {
    let mut lookup = |text: &str| -> u64 {
        if text.is_empty() {
            return 0;
        }
        match counter.memo.get(text) {
            Some(n) => u64::from(*n),
            None => {
                let n = counter
                    .encoder
                    .get_or_insert_with(encoder)
                    .encode_ordinary(text)
                    .len();
                counter
                    .memo
                    .insert(text.into(), u32::try_from(n).unwrap_or(u32::MAX));
                n as u64
            }
        }
    };
    let bytes = piece.as_bytes();
    let (mut total, mut start, mut i) = (0, 0, 0);
    // A piece is cut before a space with a non-space before it; a space followed by a digit
    // is then a match of its own (`\s+`: no other alternative takes a space before a digit),
    // one token, and the digits after it start fresh.
    if bytes.len() > 1 && bytes[0] == b' ' && bytes[1].is_ascii_digit() {
        total += lookup(" ");
        (start, i) = (1, 1);
    }
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let run = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let before = piece[start..run].chars().next_back();
        let after = piece[i..].chars().next();
        if before.is_some_and(|c| c.is_whitespace() || c.is_numeric())
            || after.is_some_and(char::is_numeric)
        {
            continue;
        }
        total += lookup(&piece[start..run]) + (i - run).div_ceil(3) as u64;
        start = i;
    }
    total + lookup(&piece[start..])
}

/// Most pieces remembered per thread by [`o200k_tokens`] (then the memo starts over).
pub const MEMO_ENTRIES: usize = 1 << 16;

/// What a thread counts with: its memo of piece counts, and the encoder for the pieces the
/// memo does not have (held once first needed, until [`release_thread_counter`] or the end
/// of the thread).
///
/// The memo hashes with FxHash: a piece is a word or two, and SipHash took a third of the
/// counting time at a million requests (the keys are the user's own text, so the DoS
/// resistance SipHash buys is not needed).
#[derive(Default)]
struct Counter {
    memo: rustc_hash::FxHashMap<Box<str>, u32>,
    encoder: Option<Arc<tiktoken_rs::CoreBPE>>,
}

thread_local! {
    static COUNTER: std::cell::RefCell<Counter> = std::cell::RefCell::new(Counter::default());
}

/// `text` cut before every space that has a non-whitespace character on both sides.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let at = i;
            i += 1;
            if bytes[at] == b' '
                && at > start
                && text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_whitespace())
                && text[at + 1..]
                    .chars()
                    .next()
                    .is_some_and(|c| !c.is_whitespace())
            {
                let piece = &text[start..at];
                start = at;
                return Some(piece);
            }
        }
        (start < bytes.len()).then(|| {
            let piece = &text[start..];
            start = bytes.len();
            piece
        })
    })
}

/// Estimated input tokens of `request` at `provider`, with the built-in token factors
/// (the catalog's may differ: prefer [`crate::Catalog::input_tokens`]).
pub fn input_tokens(provider: ProviderKind, request: &Request) -> u64 {
    let factor = match provider {
        ProviderKind::Anthropic => 1.2,
        ProviderKind::OpenAi | ProviderKind::Gemini => 1.0,
    };
    input_tokens_with_factor(provider, request, factor)
}

/// Estimated input tokens of `request` at `provider`; text counts are o200k_base × `factor`.
pub fn input_tokens_with_factor(provider: ProviderKind, request: &Request, factor: f64) -> u64 {
    let (per_message, per_request) = framing(provider);
    let mut text = 0u64;
    let mut fixed = per_request;
    if let Some(system) = &request.system {
        text += o200k_tokens(system);
        fixed += per_message;
    }
    if let Some(schema) = &request.schema {
        text += o200k_tokens(&schema.to_string());
    }
    for message in &request.messages {
        fixed += per_message;
        for part in &message.content {
            match part {
                Part::Text { text: t } => text += o200k_tokens(t),
                Part::Document {
                    data, media_type, ..
                } if media_type == "application/pdf" => {
                    let pages = decode(data)
                        .and_then(|bytes| pdf_pages(&bytes))
                        .unwrap_or_else(|| pdf_pages_guess(data));
                    let (image, page_text) = pdf_page_tokens(provider);
                    fixed += pages * image;
                    text += pages * page_text;
                }
                Part::Document { data, .. } => {
                    text += decode(data).map_or(data.len() as u64 / 4, |b| {
                        o200k_tokens(&String::from_utf8_lossy(&b))
                    });
                }
                Part::Image { data, .. } => {
                    fixed += image_size(data).map_or(TOKENS_PER_IMAGE_GUESS, |(w, h)| {
                        image_tokens(provider, w, h)
                    });
                }
            }
        }
    }
    fixed + (text as f64 * factor).ceil() as u64
}

/// Tokens an image of `w` × `h` pixels costs at `provider`, by the provider's published
/// formula (default detail / resolution).
pub fn image_tokens(provider: ProviderKind, w: u64, h: u64) -> u64 {
    let (w, h) = (w.max(1), h.max(1));
    match provider {
        // Anthropic vision docs: about w × h / 750 tokens; images with a long edge over
        // 1,568 px or over ~1.15 megapixels are scaled down first (so ~1,600 at most).
        ProviderKind::Anthropic => {
            let scale = (1568.0 / w.max(h) as f64)
                .min((1_150_000.0 / (w * h) as f64).sqrt())
                .min(1.0);
            let (w, h) = (w as f64 * scale, h as f64 * scale);
            ((w * h / 750.0).ceil() as u64).min(1_600)
        }
        // OpenAI vision docs (GPT-4o / 4.1 / 5, detail high or auto): fit in 2048 × 2048, then
        // shortest side to 768; 85 + 170 per 512 px tile.
        ProviderKind::OpenAi => {
            let (mut w, mut h) = (w as f64, h as f64);
            let fit = (2048.0 / w.max(h)).min(1.0);
            (w, h) = (w * fit, h * fit);
            let short = (768.0 / w.min(h)).min(1.0);
            (w, h) = (w * short, h * short);
            let tiles = (w / 512.0).ceil() as u64 * (h / 512.0).ceil() as u64;
            85 + 170 * tiles
        }
        // Gemini image docs (2.x): 258 tokens if both sides are at most 384 px, else 258 per
        // 768 × 768 tile.
        ProviderKind::Gemini => {
            if w <= 384 && h <= 384 {
                258
            } else {
                258 * w.div_ceil(768) * h.div_ceil(768)
            }
        }
    }
}

/// What one PDF page costs at `provider`, by its documented treatment: `(image tokens, o200k
/// text tokens)`; the text part is scaled by the provider's token factor like any text.
///
/// - Anthropic (PDF support docs): each page is sent as an image plus its extracted text,
///   "typically 1,500–3,000 tokens per page": a 150-dpi Letter page by the image formula
///   (≈1,531 after downscaling) plus [`PDF_PAGE_TEXT_TOKENS`] × 1.2 ≈ 2,130.
/// - OpenAI (file inputs guide): the extracted text and an image of each page: the page image
///   at `detail: auto` (765: four 512-px tiles) plus [`PDF_PAGE_TEXT_TOKENS`].
/// - Gemini (document understanding docs): each page is an image of 258 tokens; its text is
///   not billed on top.
pub fn pdf_page_tokens(provider: ProviderKind) -> (u64, u64) {
    let (w, h) = PDF_PAGE_PIXELS;
    match provider {
        ProviderKind::Anthropic | ProviderKind::OpenAi => {
            (image_tokens(provider, w, h), PDF_PAGE_TEXT_TOKENS)
        }
        ProviderKind::Gemini => (258, 0),
    }
}

/// Pages of a base64 PDF whose page tree cannot be read: one per 3 KB.
fn pdf_pages_guess(data_base64: &str) -> u64 {
    (data_base64.len() as u64 * 3 / 4)
        .div_ceil(PDF_BYTES_PER_PAGE_GUESS)
        .max(1)
}

/// Most pages a PDF is believed to have (a `/Count` above it is taken for garbage).
const PDF_MAX_PAGES: u64 = 1_000_000;

/// The page count of a PDF, read without decoding any stream; `None` when it cannot tell.
///
/// In order: the `/N` of a linearization dictionary (in the first KB of linearized files);
/// else the largest `/Count` of an object whose `/Type` is `/Pages` (the root of the page
/// tree counts every page; incremental updates may hold older roots, and outlines' `/Count`
/// are ignored); else, when no object stream (`/ObjStm`) could hide page objects, the number
/// of objects of `/Type /Page`. PDFs that keep their page tree in compressed object streams
/// (common since PDF 1.5) give `None`: the caller falls back to a size-based guess.
pub fn pdf_pages(bytes: &[u8]) -> Option<u64> {
    let head = &bytes[..bytes.len().min(1024)];
    find(head, b"%PDF-")?;
    if let Some(at) = find(head, b"/Linearized") {
        let end = find(&bytes[at..], b">>").map_or(bytes.len(), |e| at + e);
        if let Some(n) =
            find(&bytes[at..end], b"/N").and_then(|n| int_after(&bytes[at + n + 2..end]))
            && (1..=PDF_MAX_PAGES).contains(&n)
        {
            return Some(n);
        }
    }
    let mut best = None;
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], b"/Count").map(|i| from + i) {
        from = at + 6;
        let Some(count) = int_after(&bytes[from..]) else {
            continue;
        };
        // The object around it: from the `obj` before to the `endobj` after.
        let start = rfind(&bytes[..at], b"obj").unwrap_or(0);
        let end = find(&bytes[at..], b"endobj").map_or(bytes.len(), |e| at + e);
        if type_is(&bytes[start..end], b"Pages") && (1..=PDF_MAX_PAGES).contains(&count) {
            best = best.max(Some(count));
        }
    }
    if best.is_some() || find(bytes, b"/ObjStm").is_some() {
        return best;
    }
    let mut pages = 0u64;
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], b"/Type").map(|i| from + i) {
        from = at + 5;
        pages += u64::from(name_after(&bytes[from..]) == Some(b"Page".as_slice()));
    }
    (pages > 0).then_some(pages)
}

/// Whether a `/Type` in `object` names `name` exactly.
fn type_is(object: &[u8], name: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = find(&object[from..], b"/Type").map(|i| from + i) {
        from = at + 5;
        if name_after(&object[from..]) == Some(name) {
            return true;
        }
    }
    false
}

/// The PDF name (`/Name`) at the start of `bytes`, after whitespace, without its slash.
fn name_after(bytes: &[u8]) -> Option<&[u8]> {
    let rest = trim_start(bytes).strip_prefix(b"/")?;
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace() || b"/<>[]()%{}".contains(b))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The non-negative integer at the start of `bytes`, after whitespace.
fn int_after(bytes: &[u8]) -> Option<u64> {
    let rest = trim_start(bytes);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 12 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take_while(|b| b.is_ascii_whitespace() || **b == 0)
        .count();
    &bytes[skip..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn decode(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// Width and height from the header of a base64 PNG, GIF, WebP or JPEG; `None` for anything
/// else or a header that does not parse. Only the header is read, no pixel is decoded.
pub fn image_size(data_base64: &str) -> Option<(u64, u64)> {
    // PNG, GIF and WebP keep the size in the first 30 bytes; JPEG needs a scan of its
    // segments, so decode at most what it takes (whole-image decoding only for JPEGs whose
    // frame header sits behind large metadata segments).
    let head = decode(&data_base64[..data_base64.len().min(64)])?;
    if head.starts_with(b"\x89PNG\r\n\x1a\n") && head.len() >= 24 {
        return Some((be32(&head[16..20]), be32(&head[20..24])));
    }
    if head.starts_with(b"GIF8") && head.len() >= 10 {
        return Some((le16(&head[6..8]), le16(&head[8..10])));
    }
    if head.starts_with(b"RIFF") && head.len() >= 30 && &head[8..12] == b"WEBP" {
        return match &head[12..16] {
            b"VP8 " => Some((le16(&head[26..28]) & 0x3fff, le16(&head[28..30]) & 0x3fff)),
            b"VP8L" => {
                let b = &head[21..25];
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                Some((
                    u64::from(bits & 0x3fff) + 1,
                    u64::from((bits >> 14) & 0x3fff) + 1,
                ))
            }
            b"VP8X" => Some((le24(&head[24..27]) + 1, le24(&head[27..30]) + 1)),
            _ => None,
        };
    }
    if head.starts_with(&[0xff, 0xd8]) {
        return jpeg_size(&decode(data_base64)?);
    }
    None
}

fn jpeg_size(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xff {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xff {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let h = u64::from(u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]));
            let w = u64::from(u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]));
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le16(b: &[u8]) -> u64 {
    u64::from(u16::from_le_bytes([b[0], b[1]]))
}

fn le24(b: &[u8]) -> u64 {
    u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
}

/// Tokens a provider may add per message, at most (role markers, separators).
const BOUND_PER_MESSAGE: u64 = 16;
/// Tokens a provider may add per request, at most.
const BOUND_PER_REQUEST: u64 = 64;
/// Most tokens an image costs on any provider when its size cannot be read from its header
/// (they resize large images down).
pub const BOUND_PER_IMAGE: u64 = 2_000;

/// An upper bound on the tokens of an image of `w` × `h` pixels on any provider: the largest
/// of the providers' formulas with no downscaling at all (Anthropic w × h / 750, Gemini 258 per
/// 768-pixel tile, OpenAI 85 + 170 per 512-pixel tile), and never below [`BOUND_PER_IMAGE`].
pub fn image_tokens_bound(w: u64, h: u64) -> u64 {
    let anthropic = (w * h).div_ceil(750);
    let gemini = 258 * w.div_ceil(768).max(1) * h.div_ceil(768).max(1);
    let openai = 85 + 170 * w.div_ceil(512).max(1) * h.div_ceil(512).max(1);
    BOUND_PER_IMAGE.max(anthropic).max(gemini).max(openai)
}

/// An upper bound on the input tokens `request` can be billed for, used to reserve cost
/// against a cap. Every provider's tokenizer spends at least one byte of text per token, so
/// text, the system prompt and the output schema count one token per byte; PDFs count two per
/// byte plus [`BOUND_PER_IMAGE`] per page (every provider bills each page as an image; pages
/// from [`pdf_pages`], else one per 3 KB); images by [`image_tokens_bound`]. Typically
/// 3–4× the estimate: a cap that holds must be pessimistic, and reservations are replaced by
/// actual usage as batches return.
pub fn input_tokens_bound(request: &Request) -> u64 {
    let mut tokens = BOUND_PER_REQUEST + request.system.as_deref().map_or(0, |s| s.len() as u64);
    if let Some(schema) = &request.schema {
        tokens += schema.to_string().len() as u64;
    }
    for message in &request.messages {
        tokens += BOUND_PER_MESSAGE;
        for part in &message.content {
            tokens += match part {
                Part::Text { text } => text.len() as u64,
                Part::Document {
                    data, media_type, ..
                } => {
                    let bytes = data.len() as u64 * 3 / 4;
                    if media_type == "application/pdf" {
                        // Text (two per byte) and an image of every page.
                        let pages = decode(data)
                            .and_then(|bytes| pdf_pages(&bytes))
                            .unwrap_or_else(|| pdf_pages_guess(data));
                        bytes * 2 + pages * BOUND_PER_IMAGE
                    } else {
                        bytes
                    }
                }
                Part::Image { data, .. } => {
                    image_size(data).map_or(BOUND_PER_IMAGE, |(w, h)| image_tokens_bound(w, h))
                }
            };
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_types::Message;

    fn request(prompt: &str) -> Request {
        Request {
            id: "a".into(),
            model: "m".into(),
            messages: vec![Message::user(prompt)],
            system: None,
            max_tokens: 10,
            temperature: None,
            schema: None,
            citations: false,
            metadata: None,
        }
    }

    #[test]
    fn openai_counts_o200k_exactly_plus_framing() {
        // "Hello, world!" is 4 o200k_base tokens: Hello , world !
        assert_eq!(o200k_tokens("Hello, world!"), 4);
        let r = request("Hello, world!");
        assert_eq!(input_tokens(ProviderKind::OpenAi, &r), 3 + 3 + 4);
    }

    /// The encoder's own count, with the encoder this thread holds (loading it for every
    /// call would take ~0.2 s each).
    fn exact(text: &str) -> u64 {
        COUNTER.with_borrow_mut(|c| {
            let encoder = c.encoder.get_or_insert_with(encoder);
            encoder.encode_ordinary(text).len() as u64
        })
    }

    #[test]
    fn a_thread_lets_go_of_the_encoder_when_told() {
        let held = || COUNTER.with_borrow(|c| (c.encoder.is_some(), c.memo.len()));
        std::thread::spawn(move || {
            // A word no other test counts, so this thread needs the encoder itself.
            assert_eq!(o200k_tokens("Zqxjvbw"), exact("Zqxjvbw"));
            assert_eq!(held(), (true, 1));
            release_thread_counter();
            assert_eq!(held(), (false, 0));
            // Counting again takes it again.
            assert_eq!(o200k_tokens("Zqxjvbw"), exact("Zqxjvbw"));
            assert_eq!(held(), (true, 1));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn memoised_counts_equal_the_encoder() {
        for text in [
            "",
            " ",
            "Hello, world!",
            "two  spaces and   three, then a tab\there and\nnew lines\n\n  indented",
            "it's don't WE'LL (parenthesised) [1, 22, 333, 4444] 3.14159 -- ... !!!",
            "trailing space ",
            " leading space",
            "ünïcödé wörds, 日本語のテキスト, emoji 🎉 and mixed-case CamelCase words",
            "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}",
        ] {
            assert_eq!(o200k_tokens(text), exact(text), "{text:?}");
            // Twice: the second count comes from the memo.
            assert_eq!(o200k_tokens(text), exact(text), "{text:?}");
        }
    }

    #[test]
    fn every_group_of_up_to_three_digits_is_one_token() {
        for n in 0..1000 {
            for text in [format!("{n}"), format!("{n:02}"), format!("{n:03}")] {
                assert_eq!(exact(&text), 1, "{text}");
            }
        }
        assert_eq!(
            o200k_tokens("order 1234567 of 2026-11-23"),
            exact("order 1234567 of 2026-11-23")
        );
    }

    proptest::proptest! {
        #[test]
        fn memoised_counts_equal_the_encoder_on_any_text(
            text in "[a-zA-Z0-9 ,.'!?\t\n()éü日本🎉²٣ 0-9-]{0,120}"
        ) {
            proptest::prop_assert_eq!(o200k_tokens(&text), exact(&text));
        }
    }

    #[test]
    fn other_providers_scale_by_their_factor() {
        let r = request(&"The quick brown fox jumps over the lazy dog. ".repeat(20));
        let base = o200k_tokens(&"The quick brown fox jumps over the lazy dog. ".repeat(20));
        assert_eq!(
            input_tokens_with_factor(ProviderKind::Anthropic, &r, 1.5),
            4 + 3 + (base as f64 * 1.5).ceil() as u64
        );
        assert!(input_tokens(ProviderKind::Anthropic, &r) > input_tokens(ProviderKind::Gemini, &r));
    }

    #[test]
    fn the_bound_stays_above_the_estimate() {
        let mut r = request(&"x".repeat(400));
        r.system = Some("y".repeat(40));
        assert_eq!(input_tokens_bound(&r), 64 + 40 + 16 + 400);
        r.schema = Some(serde_json::json!({"type": "object"}));
        assert_eq!(input_tokens_bound(&r), 64 + 40 + 16 + 400 + 17);
        for p in ProviderKind::ALL {
            assert!(input_tokens_bound(&r) > input_tokens(p, &r));
        }
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn image_sizes_come_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(1000u32.to_be_bytes());
        png.extend(500u32.to_be_bytes());
        png.extend([8, 6, 0, 0, 0]);
        assert_eq!(image_size(&b64(&png)), Some((1000, 500)));
        let gif = b"GIF89a\x40\x01\xf0\x00\0\0\0";
        assert_eq!(image_size(&b64(gif)), Some((320, 240)));
        // JPEG: SOI, an APP0 segment, then SOF0 with height 300, width 400.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0, 0];
        jpeg.extend([
            0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0x2c, 0x01, 0x90, 3, 0, 0, 0, 0,
        ]);
        assert_eq!(image_size(&b64(&jpeg)), Some((400, 300)));
        assert_eq!(image_size(&b64(b"not an image at all")), None);
    }

    #[test]
    fn image_formulas_follow_the_providers_docs() {
        // Anthropic: 1000 × 1000 / 750 = 1,334.
        assert_eq!(image_tokens(ProviderKind::Anthropic, 1000, 1000), 1334);
        // OpenAI's worked example: 1024 × 1024 → 768 × 768, 4 tiles, 765 tokens.
        assert_eq!(image_tokens(ProviderKind::OpenAi, 1024, 1024), 765);
        // OpenAI: 2048 × 4096 → 1024 × 2048 → 768 × 1536, 6 tiles, 1,105 tokens.
        assert_eq!(image_tokens(ProviderKind::OpenAi, 2048, 4096), 1105);
        assert_eq!(image_tokens(ProviderKind::Gemini, 300, 200), 258);
        assert_eq!(image_tokens(ProviderKind::Gemini, 1000, 1000), 258 * 4);
        for (w, h) in [(100, 100), (1000, 1000), (4000, 3000), (8000, 100)] {
            for p in ProviderKind::ALL {
                assert!(
                    image_tokens(p, w, h) <= image_tokens_bound(w, h),
                    "{p} {w}x{h}"
                );
            }
        }
    }

    /// A small, well-formed PDF with `pages` pages (page objects listed under one `/Pages`
    /// root), each page showing one line of text, with a cross-reference table.
    fn pdf(pages: usize, extra: &str) -> Vec<u8> {
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R /Outlines 3 0 R >>".to_owned(),
            String::new(),
            // Outlines have a /Count too; it is not a page count.
            "<< /Type /Outlines /Count 99 >>".to_owned(),
        ];
        let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        objects[1] = format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        );
        for i in 0..pages {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R >>",
                5 + 2 * i
            ));
            let text = format!("BT /F1 12 Tf 72 720 Td (Page {}) Tj ET", i + 1);
            objects.push(format!(
                "<< /Length {} >>\nstream\n{text}\nendstream",
                text.len()
            ));
        }
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
        }
        out.extend(extra.as_bytes());
        let xref = out.len();
        out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for offset in offsets {
            out.extend(format!("{offset:010} 00000 n \n").as_bytes());
        }
        out.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    #[test]
    fn pdf_pages_come_from_the_page_tree() {
        for n in [1, 3, 12] {
            assert_eq!(pdf_pages(&pdf(n, "")), Some(n as u64), "{n} pages");
        }
        // An incremental update that adds pages: the newest (largest) root counts.
        let updated = pdf(
            2,
            "2 0 obj\n<< /Type /Pages /Kids [4 0 R 6 0 R 9 0 R] /Count 3 >>\nendobj\n",
        );
        assert_eq!(pdf_pages(&updated), Some(3));
        // No page-tree /Count: the page objects are counted (not /Pages, not /PageLabels).
        let no_count = String::from_utf8_lossy(&pdf(4, "")).replace("/Count 4", "");
        assert_eq!(pdf_pages(no_count.as_bytes()), Some(4));
        // Linearized files say it up front.
        let linearized = String::from_utf8_lossy(&pdf(2, "")).replacen(
            "%PDF-1.4\n",
            "%PDF-1.4\n99 0 obj << /Linearized 1 /L 5000 /N 7 /T 4000 >> endobj\n",
            1,
        );
        assert_eq!(pdf_pages(linearized.as_bytes()), Some(7));
        // A page tree inside a compressed object stream cannot be read: no guess here.
        let hidden = b"%PDF-1.5\n1 0 obj << /Type /ObjStm /N 40 /First 300 /Filter /FlateDecode /Length 9 >>\nstream\nx\x9c\x03\x00\x00\x00\x00\x01\nendstream endobj\n%%EOF\n";
        assert_eq!(pdf_pages(hidden), None);
        assert_eq!(pdf_pages(b"not a pdf /Type /Pages /Count 3"), None);
        assert_eq!(pdf_pages(b"%PDF-1.7\n%%EOF"), None);
    }

    #[test]
    fn pdf_tokens_follow_each_providers_per_page_formula() {
        let mut r = request("Summarise.");
        let data = b64(&pdf(3, ""));
        r.messages[0].content.insert(
            0,
            Part::Document {
                media_type: "application/pdf".into(),
                data: data.clone(),
                name: None,
            },
        );
        let text_only = input_tokens(ProviderKind::Gemini, &request("Summarise."));
        // Gemini: 258 a page, text not billed on top.
        assert_eq!(input_tokens(ProviderKind::Gemini, &r), text_only + 3 * 258);
        // OpenAI: the page image (765) and ~500 tokens of text a page.
        let openai = input_tokens(ProviderKind::OpenAi, &request("Summarise."));
        assert_eq!(
            input_tokens(ProviderKind::OpenAi, &r),
            openai + 3 * (765 + 500)
        );
        // Anthropic: within its documented 1,500–3,000 a page.
        let per_page = (input_tokens(ProviderKind::Anthropic, &r)
            - input_tokens(ProviderKind::Anthropic, &request("Summarise.")))
            / 3;
        assert!((1_500..=3_000).contains(&per_page), "{per_page}");
        // The cap's bound has two tokens per byte and an image's bound per page on top.
        let bytes = data.len() as u64 * 3 / 4;
        assert_eq!(
            input_tokens_bound(&r),
            input_tokens_bound(&request("Summarise.")) + 2 * bytes + 3 * BOUND_PER_IMAGE
        );
        for p in ProviderKind::ALL {
            assert!(input_tokens_bound(&r) > input_tokens(p, &r), "{p}");
        }
        // A PDF whose pages cannot be counted: one page per 3 KB.
        let mut unknown = request("x");
        unknown.messages[0].content.push(Part::Document {
            media_type: "application/pdf".into(),
            data: b64(&[b'%'; 7_000]),
            name: None,
        });
        let base = input_tokens(ProviderKind::Gemini, &request("x"));
        assert_eq!(input_tokens(ProviderKind::Gemini, &unknown), base + 3 * 258);
    }

    proptest::proptest! {
        #[test]
        fn pdf_pages_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = pdf_pages(&bytes);
        }

        #[test]
        fn pdf_pages_never_panics_on_pdf_like_bytes(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "%PDF-1.4", "/Type", " /Pages", "/Page", "/Count", " 7", "-3", "obj", "endobj",
                    "<<", ">>", "/Linearized", "/N", "/ObjStm", " ", "\n", "99999999999999", "/",
                ]),
                0..60,
            )
        ) {
            let bytes = pieces.concat();
            if let Some(n) = pdf_pages(bytes.as_bytes()) {
                proptest::prop_assert!((1..=PDF_MAX_PAGES).contains(&n));
            }
        }
    }
}
