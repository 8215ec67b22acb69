//! The body of a multipart upload (`multipart/related`: a JSON metadata part, then the media).
//! Read here rather than by `multer` because gcloud's body ends its lines with a bare LF
//! (Python's `email` package writes it so), which `multer` refuses and Google accepts; lines may
//! end in CRLF or LF. The metadata and the media part's headers are read into memory (bounded);
//! the media streams through, up to the delimiter that closes it.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::metadata::MAX_METADATA_BYTES;
use crate::error::ApiError;
use cloister_store::ByteStream;

/// Room for the delimiters and the parts' headers besides the metadata itself.
const MAX_HEAD_BYTES: usize = MAX_METADATA_BYTES + 16 * 1024;

pub struct Related {
    pub metadata: Bytes,
    /// The media part's Content-Type, if it has one.
    pub media_type: Option<String>,
    pub media: ByteStream,
}

fn malformed(why: &str) -> ApiError {
    ApiError::InvalidArgument(format!(
        "Malformed multipart body: {why}. A multipart upload is a JSON metadata part then the media, between --BOUNDARY lines, closed by --BOUNDARY--"
    ))
}

/// Where `needle` first occurs in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The line starting at `at` (without its LF or CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let end = find(buf, b"\n", at)?;
    let text = &buf[at..end];
    Some((text.strip_suffix(b"\r").unwrap_or(text), end + 1))
}

/// Skips a part's headers from `at`; its Content-Type and where its body starts.
fn headers(buf: &[u8], mut at: usize) -> Option<(Option<String>, usize)> {
    let mut content_type = None;
    loop {
        let (text, next) = line(buf, at)?;
        if text.is_empty() {
            return Some((content_type, next));
        }
        if let Some((name, value)) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.split_once(':'))
            && name.trim().eq_ignore_ascii_case("content-type")
        {
            content_type = Some(value.trim().to_owned());
        }
        at = next;
    }
}

/// What the head of the body holds once complete: the metadata and the media part's type,
/// and where the media starts. None while more bytes are needed.
fn head(buf: &[u8], boundary: &[u8]) -> Result<Option<(Bytes, Option<String>, usize)>, ApiError> {
    let delimiter = [b"--", boundary].concat();
    // The first delimiter line (a preamble before it is ignored, as RFC 2046 says).
    let mut at = 0;
    let first_body = loop {
        let Some((text, next)) = line(buf, at) else {
            return Ok(None);
        };
        if text.trim_ascii_end() == delimiter.as_slice() {
            break next;
        }
        at = next;
    };
    let Some((_, metadata_start)) = headers(buf, first_body) else {
        return Ok(None);
    };
    let separator = [b"\n--", boundary].concat();
    let Some(found) = find(buf, &separator, metadata_start) else {
        return Ok(None);
    };
    let metadata_end = if found > metadata_start && buf[found - 1] == b'\r' {
        found - 1
    } else {
        found
    };
    let Some((rest, media_headers)) = line(buf, found + 1) else {
        return Ok(None);
    };
    if rest.trim_ascii_end() != delimiter.as_slice() {
        return Err(malformed("the body has no media part after the metadata"));
    }
    let Some((media_type, media_start)) = headers(buf, media_headers) else {
        return Ok(None);
    };
    let metadata = Bytes::copy_from_slice(&buf[metadata_start..metadata_end]);
    Ok(Some((metadata, media_type, media_start)))
}

/// Splits a multipart/related upload into its metadata and a stream of its media.
pub async fn split(
    mut body: impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
    boundary: &str,
) -> Result<Related, ApiError> {
    let boundary = boundary.as_bytes().to_vec();
    let mut buf = BytesMut::new();
    let (metadata, media_type, media_start) = loop {
        if let Some(found) = head(&buf, &boundary)? {
            break found;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "The multipart metadata part is larger than {MAX_METADATA_BYTES} bytes"
            )));
        }
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.map_err(|e| {
                ApiError::InvalidArgument(format!("reading the request body: {e}"))
            })?),
            None => return Err(malformed("it ends before the media part begins")),
        }
    };
    let _ = buf.split_to(media_start);
    let state = Media {
        body: Box::pin(body),
        pending: buf,
        needle: [b"\n--", boundary.as_slice()].concat(),
        done: false,
    };
    Ok(Related {
        metadata,
        media_type,
        media: Box::pin(futures::stream::unfold(state, Media::next)),
    })
}

struct Media {
    body: ByteStream,
    pending: BytesMut,
    needle: Vec<u8>,
    done: bool,
}

impl Media {
    /// The next piece of media: everything before the closing delimiter, in the pieces the
    /// body arrives in, less a tail that could be the start of the delimiter.
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Media)> {
        let unclosed = || std::io::Error::other(malformed("it is not closed"));
        loop {
            if self.done {
                return None;
            }
            if let Some(i) = find(&self.pending, &self.needle, 0) {
                let after = i + self.needle.len();
                // The media part must be the last: `--` right after the delimiter closes the
                // body (what follows, the epilogue, is ignored).
                if self.pending.len() < after + 2 {
                    if !self.fill().await {
                        self.done = true;
                        return Some((Err(unclosed()), self));
                    }
                    continue;
                }
                self.done = true;
                if &self.pending[after..after + 2] != b"--" {
                    let e = malformed("it has more than a metadata and a media part");
                    return Some((Err(std::io::Error::other(e)), self));
                }
                let end = if i > 0 && self.pending[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                let media = self.pending.split_to(end).freeze();
                return Some((Ok(media), self));
            }
            // Keep what could be the start of the delimiter (and a CR before it); hand on the
            // rest as it arrives.
            let keep = self.needle.len() + 1;
            if self.pending.len() > keep {
                let n = self.pending.len() - keep;
                let media = self.pending.split_to(n).freeze();
                return Some((Ok(media), self));
            }
            if !self.fill().await {
                self.done = true;
                return Some((Err(unclosed()), self));
            }
        }
    }

    /// Reads more of the body into `pending`; false at its end (or on an error, which the
    /// caller reports as an unclosed body).
    async fn fill(&mut self) -> bool {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.pending.extend_from_slice(&chunk);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;
    use bytes::Bytes;
    use futures::TryStreamExt;

    async fn parse(body: &[u8], chunk: usize) -> Result<(String, Option<String>, Vec<u8>), String> {
        let chunks: Vec<std::io::Result<Bytes>> = body
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let related = split(futures::stream::iter(chunks), "B=1")
            .await
            .map_err(|e| e.to_string())?;
        let media: Vec<Bytes> = related
            .media
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            String::from_utf8(related.metadata.to_vec()).unwrap(),
            related.media_type,
            media.concat(),
        ))
    }

    #[tokio::test]
    async fn crlf_and_gclouds_bare_lf_bodies_split_alike_in_any_chunks() {
        let crlf = b"--B=1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"x\"}\r\n--B=1\r\nContent-Type: text/plain\r\n\r\nline one\r\n--B=\r\n--B=1--\r\n";
        let lf = b"preamble\n--B=1\nContent-Type: application/json\nMIME-Version: 1.0\n\n{\"name\":\"x\"}\n--B=1\nContent-Type: text/plain\nContent-Transfer-Encoding: binary\n\nline one\r\n--B=\n--B=1--\n";
        for body in [&crlf[..], &lf[..]] {
            for chunk in [1, 2, 3, 7, 1000] {
                let (metadata, media_type, media) = parse(body, chunk).await.unwrap();
                assert_eq!(metadata, "{\"name\":\"x\"}");
                assert_eq!(media_type.as_deref(), Some("text/plain"));
                assert_eq!(media, b"line one\r\n--B=", "chunks of {chunk}");
            }
        }
        let empty = b"--B=1\n\n{}\n--B=1\n\n\n--B=1--";
        assert_eq!(parse(empty, 4).await.unwrap(), ("{}".into(), None, vec![]));
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused() {
        for body in [
            &b"--B=1\n\n{}\n--B=1--\n"[..],
            b"--B=1\n\n{}\n--B=1\n\nmedia without an end",
            b"--B=1\n\n{}\n--B=1\n\nmedia\n--B=1\n\nthird part\n--B=1--",
            b"no delimiter at all",
            b"",
        ] {
            assert!(
                parse(body, 3).await.is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
