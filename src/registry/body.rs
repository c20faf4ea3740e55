//! A request body that must keep moving: at least `min_rate` bytes/s over every window,
//! else it ends with [`BodyTooSlow`] (the handler answers 408 and the connection closes).
//! An upload trickling at 1 byte/s cannot hold a connection and a session forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a too-slow body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body slower than {min_rate} bytes/s over {window:?}")]
pub struct BodyTooSlow {
    pub min_rate: u64,
    pub window: Duration,
}

impl BodyTooSlow {
    /// Whether `e` (an error of a body read by a handler) is this one.
    pub fn is(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(e) = cur {
            if e.is::<BodyTooSlow>() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

pub struct MinRate<B> {
    inner: B,
    /// Set once the body was read to its end.
    ended: Arc<AtomicBool>,
    min_rate: u64,
    window: Duration,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl<B: Body> MinRate<B> {
    /// The body, and a flag set once it was read to its end (an empty body is at its end).
    pub fn new(inner: B, min_rate: u64, window: Duration) -> (MinRate<B>, Arc<AtomicBool>) {
        let window = window.max(Duration::from_millis(10));
        let ended = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let timer = Box::pin(tokio::time::sleep(window));
        (MinRate { inner, ended: Arc::clone(&ended), min_rate, window, received: 0, timer }, ended)
    }
}

impl<B> MinRate<B> {
    /// A window ended: enough bytes came, or the body is too slow.
    fn roll(&mut self) -> Result<(), BodyTooSlow> {
        let needed = (self.min_rate as f64 * self.window.as_secs_f64()) as u64;
        if self.received < needed {
            return Err(BodyTooSlow { min_rate: self.min_rate, window: self.window });
        }
        self.received = 0;
        self.timer.as_mut().reset(Instant::now() + self.window);
        Ok(())
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                if this.timer.is_elapsed() {
                    if let Err(e) = this.roll() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                if this.inner.is_end_stream() {
                    this.ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                while this.timer.as_mut().poll(cx).is_ready() {
                    if let Err(e) = this.roll() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
