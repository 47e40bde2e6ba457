//! [`HuntingBody`]: a [`Translator`] applied to an `http_body::Body`, frame by frame.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::Instant;

use super::translate::Translator;
use crate::idle::BoxError;

pin_project_lite::pin_project! {
    /// A Graph hunting answer body translated into the legacy shape, frame by frame.
    ///
    /// `ExecutionTime` is the time since `sent_at` when the inner body ends. A translation error
    /// ends the body with an error (the client sees an incomplete response); trailers are dropped.
    #[derive(Debug)]
    pub(crate) struct HuntingBody<B> {
        #[pin]
        body: B,
        translator: Option<Translator>,
        pending: VecDeque<Bytes>,
        scratch: Vec<Bytes>,
        sent_at: Instant,
        done: bool,
        high_water: usize,
    }
}

impl<B> HuntingBody<B> {
    /// `body` is Graph's 200 answer; `sent_at` is when the request was sent to Graph.
    pub(crate) fn new(body: B, sent_at: Instant) -> Self {
        HuntingBody {
            body,
            translator: Some(Translator::new()),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            sent_at,
            done: false,
            high_water: 0,
        }
    }

    /// The most bytes the translator held between frames so far.
    pub(crate) fn held_high_water(&self) -> usize {
        self.high_water
    }
}

impl<B> Body for HuntingBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(data) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let (Ok(data), Some(translator)) =
                        (frame.into_data(), this.translator.as_mut())
                    else {
                        continue;
                    };
                    if let Err(err) = translator.feed(data, this.scratch) {
                        *this.done = true;
                        this.scratch.clear();
                        return Poll::Ready(Some(Err(Box::new(err))));
                    }
                    *this.high_water = translator.high_water();
                    this.pending
                        .extend(this.scratch.drain(..).filter(|b| !b.is_empty()));
                }
                Some(Err(err)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    *this.done = true;
                    if let Some(translator) = this.translator.take() {
                        match translator.finish(this.sent_at.elapsed()) {
                            Ok(tail) => this.pending.push_back(tail),
                            Err(err) => return Poll::Ready(Some(Err(Box::new(err)))),
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}
