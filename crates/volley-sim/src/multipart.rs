//! A small `multipart/form-data` parser for the OpenAI file upload (the body is already
//! buffered; parts are zero-copy slices of it).

use bytes::Bytes;

/// One form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) filename: Option<String>,
    pub(crate) data: Bytes,
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let at = i + hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// A `name="value"` parameter of a header.
fn header_param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits `body` into its parts.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let close = format!("\r\n--{boundary}");
    let mut pos = find(body, delimiter.as_bytes(), 0)
        .ok_or("the multipart body has no boundary line")?
        + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(
                "malformed multipart body (expected a line break after the boundary)".into(),
            );
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("malformed multipart part headers")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "multipart part headers are not UTF-8")?;
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = header_param(v, "name");
                filename = header_param(v, "filename");
            }
        }
        let data_start = head_end + 4;
        let data_end = find(body, close.as_bytes(), data_start)
            .ok_or("the multipart body ends without its closing boundary")?;
        parts.push(Part {
            name: name.ok_or("a multipart part has no name")?,
            filename,
            data: body.slice(data_start..data_end),
        });
        pos = data_end + close.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_files() {
        let ct = "multipart/form-data; boundary=\"xyz\"";
        let b = boundary(ct).unwrap();
        assert_eq!(b, "xyz");
        let body = Bytes::from_static(
            b"--xyz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
              --xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--xyz--\r\n",
        );
        let parts = parse(&body, &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(&parts[0].data[..], b"batch");
        assert_eq!(parts[1].filename.as_deref(), Some("a.jsonl"));
        assert_eq!(&parts[1].data[..], b"{\"a\":1}\n{\"b\":2}\n");
        assert!(boundary("application/json").is_none());
        assert!(parse(&Bytes::from_static(b"--xyz\r\nnope"), "xyz").is_err());
    }
}
