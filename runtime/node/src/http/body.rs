//! The node's HTTP bodies and the plumbing of every handler: the [`Body`] type of answers
//! (whole, or streamed: from a body or a [`channel`]), JSON and text responses, bounded
//! request-body reads, query parameters and path-segment encoding.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Frame, Incoming},
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// The body of every answer: whole, or written as it is produced (a peer's append stream or
/// forwarding exchange, a topic's event stream).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole answer body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body written as it is produced.
pub fn streaming<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    body.boxed_unsync()
}

/// A body of the chunks sent on `rx`, written as they come and ending when every sender is
/// dropped (an event stream). Dropped itself when the client goes away, which the sender sees
/// as its channel closing.
pub fn channel(rx: mpsc::Receiver<Bytes>) -> Body {
    streaming(ChannelBody(rx))
}

/// The body of [`channel`].
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// An answer of `status` with a JSON body.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    text_response(status, "application/json", value.to_string())
}

/// An answer of `status` with a body of `content_type`.
pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The JSON error answer of `e`: its status and `{"error":{"code":…,"message":…}}`.
pub fn error_response(e: &Error) -> Response<Body> {
    let mut resp = json_response(e.status(), &e.to_json());
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub use cella_core::encode_segment;

/// Decodes the `%XX` escapes of one path segment; a `%` not followed by two hex digits, or
/// bytes that are not UTF-8, are refused (a lenient decode would address another entity).
pub fn decode_segment(segment: &str) -> Result<String> {
    let bytes = segment.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(Error::BadRequest(format!(
            "bad percent-escape in `{segment}`"
        )));
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| Error::BadRequest(format!("`{segment}` is not UTF-8")))
}

/// The decoded value of query parameter `name` (`application/x-www-form-urlencoded`).
pub fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Query parameter `name` as a number, or `default` when absent.
pub fn u64_param<B>(req: &Request<B>, name: &str, default: u64) -> Result<u64> {
    match query_param(req, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::BadRequest(format!(
                "query parameter `{name}` must be a number, got `{v}`"
            ))
        }),
    }
}

/// How many bytes past a body limit the server still reads (and discards) before answering 413,
/// so that a client that is still sending sees the answer instead of a reset connection.
const DRAIN_MAX: usize = 16 << 20;

/// Reads a request body up to `limit` bytes; `what` names it in the 413 answer.
pub async fn read_body(req: Request<Incoming>, limit: usize, what: &'static str) -> Result<Bytes> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Error::BodyRead)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            collected.extend_from_slice(&data);
        } else if seen > limit + DRAIN_MAX {
            break;
        }
    }
    if seen > limit || declared.is_some_and(|d| d > limit as u64) {
        let size = declared.unwrap_or(seen as u64).max(seen as u64);
        return Err(Error::PayloadTooLarge {
            what,
            size,
            limit: limit as u64,
        });
    }
    Ok(Bytes::from(collected))
}

/// Normalizes a command body to JSON text: empty means `null`; anything else must parse.
pub fn command_payload(body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::BadRequest("the request body is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Ok("null".into());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| Error::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(decode_segment("a%2Fb%20c").unwrap(), "a/b c");
        assert!(decode_segment("bad%zz").is_err());
        assert!(decode_segment("bad%2").is_err());
        assert!(decode_segment("%ff").is_err());
        assert_eq!(encode_segment("a b/c~é"), "a%20b%2Fc~%C3%A9");
        assert_eq!(
            decode_segment(&encode_segment("a b/c~é")).unwrap(),
            "a b/c~é"
        );
    }

    #[test]
    fn queries_are_decoded() {
        let req = Request::get("/x?from=3&name=a%20b&flag").body(()).unwrap();
        assert_eq!(query_param(&req, "name").as_deref(), Some("a b"));
        assert_eq!(query_param(&req, "flag").as_deref(), Some(""));
        assert_eq!(u64_param(&req, "from", 1).unwrap(), 3);
        assert_eq!(u64_param(&req, "limit", 7).unwrap(), 7);
        assert!(matches!(
            u64_param(&req, "name", 1),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn payloads() {
        assert_eq!(command_payload(b"").unwrap(), "null");
        assert_eq!(command_payload(b" 1 ").unwrap(), " 1 ");
        assert!(matches!(
            command_payload(b"{nope"),
            Err(Error::BadRequest(_))
        ));
    }
}
