//! A deadline for a whole request body on the API port: a body that has not fully arrived
//! [`HTTP_BODY_TIMEOUT_MS`] after its headers fails, so a client that starts a large body and
//! goes silent (or trickles it) holds neither its connection nor its buffer for long. Issue 11
//! measured 20 connections each holding 11 MiB of a snapshot restore forever.
//!
//! The body is not buffered here: the wrapper only fails it once the deadline passes, and the
//! handler's extractor answers 400 with the reason. Bodies stay bounded by
//! `limits.http_body_bytes_max` (snapshot restores by their own limit, one at a time).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Longest time a whole request body may take once its headers have arrived: a 12 MB snapshot
/// restore needs 400 KB/s.
pub(super) const HTTP_BODY_TIMEOUT_MS: u64 = 30_000;

/// Puts the deadline on every request's body.
pub(super) async fn with_deadline(request: Request, next: Next) -> Response {
    // Most requests (reads, blocking queries) carry no body: no timer for them.
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let deadline = Box::pin(tokio::time::sleep(Duration::from_millis(HTTP_BODY_TIMEOUT_MS)));
    next.run(Request::from_parts(parts, Body::new(DeadlineBody { inner: body, deadline }))).await
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received within {HTTP_BODY_TIMEOUT_MS} ms")]
struct BodyTimedOut;

/// A body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
