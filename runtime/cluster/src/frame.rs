//! The framing every peer exchange shares, and the body types it travels in: a frame is a
//! postcard value with its length in front (a big-endian `u32`), at most [`MAX_FRAME`] bytes.
//! Append streams ([`crate::stream`]) and forwarding exchanges ([`crate::mux`]) are sequences
//! of frames.
//!
//! The bottom of the peer transport: it uses none of its other modules.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use crate::{
    Error,
    types::{decode, encode},
};

/// A body written as it is produced (the server's and the streaming client's body type).
pub type StreamingBody = UnsyncBoxBody<Bytes, Infallible>;

/// The largest frame accepted (the peer transport's body limit).
const MAX_FRAME: usize = 256 << 20;

/// A whole body at once, as a [`StreamingBody`].
pub fn full_body(bytes: Bytes) -> StreamingBody {
    http_body_util::Full::new(bytes).boxed_unsync()
}

/// A body of the chunks sent on `rx`, ending when its sender is dropped.
pub(crate) fn channel_body(rx: mpsc::Receiver<Bytes>) -> StreamingBody {
    let chunks = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// `payload` with its length in front; `None` if it is too large for a frame.
fn frame(payload: &[u8]) -> Option<Bytes> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_u32(len);
    out.put_slice(payload);
    Some(out.freeze())
}

/// `value` encoded and framed; `None` if it cannot be encoded or is too large for a frame.
pub(crate) fn encode_frame<T: serde::Serialize>(what: &'static str, value: &T) -> Option<Bytes> {
    encode(what, value).ok().and_then(|bytes| frame(&bytes))
}

/// Takes the first whole frame written by [`frame`] off the front of `buf`, if it holds one.
fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
    let Some(head) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*head) as usize;
    if len > MAX_FRAME {
        return Err(Error::Malformed {
            what: "a frame",
            message: format!("its {len} bytes are over the limit"),
        });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Takes the first whole frame off the front of `buf`, if it holds one, and decodes it.
pub(crate) fn take_frame<T: serde::de::DeserializeOwned>(
    what: &'static str,
    buf: &mut BytesMut,
) -> Result<Option<T>, Error> {
    match split_frame(buf)? {
        Some(bytes) => decode(what, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Splits a body into the frames written by [`frame`].
pub(crate) struct FrameReader {
    body: Incoming,
    buf: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(body: Incoming) -> FrameReader {
        FrameReader {
            body,
            buf: BytesMut::new(),
        }
    }

    /// The next frame; `None` at the end of the body. Cancel-safe: bytes read stay buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.body.frame().await {
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(Error::Malformed {
                        what: "a frame",
                        message: "the stream ended inside it".into(),
                    });
                }
                Some(Err(source)) => {
                    return Err(Error::Transport {
                        context: "the stream broke",
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
