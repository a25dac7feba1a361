//! The data API's byte budget, enforced on each connection's socket as PostgreSQL's
//! bytes arrive, before tokio-postgres buffers them.
//!
//! Why at the socket: tokio-postgres's codec buffers a whole backend message before
//! it decodes it, so a check on decoded rows comes after a 900 MB cell has already
//! been read into memory. Every backend message starts with a tag byte and a 4-byte
//! big-endian length (counting itself), so [`Metered`] reads those headers out of the
//! bytes as they pass through `poll_read` (a header may be split across reads) and
//! fails the read, with the header still unread by tokio-postgres, when a message
//! would not fit. tokio-postgres then closes the connection; the request sees
//! [`Budget::tripped`], answers 413 (or 503), cancels the statement and discards the
//! connection.
//!
//! Two budgets apply:
//! - per request: the rows (`DataRow` messages) a request keeps, counted cumulatively,
//!   plus whatever single message is passing, must stay within the request's limit
//!   ([`super::MAX_RESULT_BYTES`] and an allowance for the protocol's framing);
//! - across all connections: the bytes those requests hold come out of one semaphore
//!   ([`ResultMemory`]), held until the response has been serialised.
//!
//! While no request runs on a connection (logging in, the clean-up of an abandoned
//! request) each message may be at most [`IDLE_MESSAGE_LIMIT`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest message accepted while no request runs on the connection: ample for
/// logging in, a notice, or the rows of the session reset.
pub const IDLE_MESSAGE_LIMIT: usize = 64 << 10;

/// The protocol's `DataRow` message.
const DATA_ROW: u8 = b'D';

/// Why a connection's budget stopped a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Trip {
    /// A message would take the request past its limit.
    #[error("a message from PostgreSQL is larger than the result's byte budget")]
    TooLarge,
    /// The data API's result memory, shared by all requests, is in use.
    #[error("the data API's result memory is in use")]
    Busy,
}

/// The bytes of result memory all requests together may hold.
#[derive(Clone)]
pub struct ResultMemory {
    permits: Arc<Semaphore>,
    total: usize,
}

impl ResultMemory {
    pub fn new(bytes: usize) -> Self {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits at most `wait` for `bytes` (no more than the whole budget), which a
    /// request holds from its start: most results fit in it, and then the request
    /// never takes more on the connection's read path (where it cannot wait).
    pub async fn reserve(&self, bytes: usize, wait: Duration) -> Option<Held> {
        let n = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(n))
            .await
            .ok()?
            .ok()?;
        Some(Held(Some(permit)))
    }

    /// Bytes not held by any request now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Bytes of result memory held by a request; given back when dropped.
#[derive(Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// How many bytes.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

/// The byte budget of one connection, shared by its socket (which charges it) and the
/// request running on the connection (which sets it up and reads whether it tripped).
pub struct Budget {
    memory: ResultMemory,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The request running on the connection, if any.
    request: Option<Request>,
    /// Once set, the connection's reads fail for good: it is never used again.
    tripped: Option<Trip>,
}

struct Request {
    /// The most bytes of rows kept, plus any one message passing, the request allows.
    limit: usize,
    /// Bytes of the rows kept so far (whole messages, as tokio-postgres buffers them).
    kept: usize,
    /// Rows still go to the request; once it has all it returns, later rows are only
    /// passing through (tokio-postgres drops them as they arrive).
    keeping: bool,
    /// Result memory held: at least `kept` plus the largest message passed since.
    held: Held,
}

impl Budget {
    pub fn new(memory: ResultMemory) -> Arc<Self> {
        Arc::new(Self {
            memory,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a request's accounting: at most `limit` bytes, with `reserved` already
    /// held. Ended when the returned [`Metering`] is finished or dropped.
    pub fn begin(self: &Arc<Self>, limit: usize, reserved: Held) -> Metering {
        self.state().request = Some(Request {
            limit,
            kept: 0,
            keeping: true,
            held: reserved,
        });
        Metering {
            budget: self.clone(),
        }
    }

    /// Why the connection's reads were stopped, if they were.
    pub fn tripped(&self) -> Option<Trip> {
        self.state().tripped
    }

    /// Charges a message of `frame` bytes (tag, length and body) whose header was just
    /// read; refused (for good) if it does not fit.
    fn admit(&self, tag: u8, frame: usize) -> Result<(), Trip> {
        let mut state = self.state();
        if let Some(trip) = state.tripped {
            return Err(trip);
        }
        let outcome = match state.request.as_mut() {
            None if frame > IDLE_MESSAGE_LIMIT => Err(Trip::TooLarge),
            None => Ok(()),
            Some(r) => r.admit(tag, frame, &self.memory),
        };
        if let Err(trip) = outcome {
            state.tripped = Some(trip);
        }
        outcome
    }
}

impl Request {
    fn admit(&mut self, tag: u8, frame: usize, memory: &ResultMemory) -> Result<(), Trip> {
        let need = self.kept.saturating_add(frame);
        if need > self.limit {
            return Err(Trip::TooLarge);
        }
        let held = self.held.bytes();
        if need > held {
            // Never waits: this runs inside the connection's read.
            let more = u32::try_from(need - held).map_err(|_| Trip::Busy)?;
            let permit = memory
                .permits
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| Trip::Busy)?;
            match self.held.0.as_mut() {
                Some(p) => p.merge(permit),
                None => self.held.0 = Some(permit),
            }
        }
        if tag == DATA_ROW && self.keeping {
            self.kept = need;
        }
        Ok(())
    }
}

/// A request's hold on its connection's budget. Dropped without [`Metering::finish`]
/// (the request failed or was cancelled), it gives the memory back at once.
pub struct Metering {
    budget: Arc<Budget>,
}

impl Metering {
    fn with<T>(&self, f: impl FnOnce(&mut Request) -> T) -> Option<T> {
        self.budget.state().request.as_mut().map(f)
    }

    /// Allows `bytes` more: the framing of the rows the statement may return, once its
    /// column count is known.
    pub fn extend(&self, bytes: usize) {
        self.with(|r| r.limit = r.limit.saturating_add(bytes));
    }

    /// The request has all the rows it returns: later ones only pass through.
    pub fn stop_keeping(&self) {
        self.with(|r| r.keeping = false);
    }

    /// Whether (and why) the connection's reads were stopped.
    pub fn tripped(&self) -> Option<Trip> {
        self.budget.tripped()
    }

    /// Ends the request's accounting; the memory it held is handed over, to be held
    /// until its response has been serialised.
    pub fn finish(self) -> Held {
        self.with(|r| std::mem::take(&mut r.held))
            .unwrap_or_default()
    }
}

impl Drop for Metering {
    fn drop(&mut self) {
        self.budget.state().request = None;
    }
}

/// Finds the headers of PostgreSQL's backend messages in a byte stream read in pieces
/// of any size.
#[derive(Default)]
struct Frames {
    header: [u8; 5],
    /// Bytes of the current header seen so far.
    have: usize,
    /// Bytes of the current message's body still to pass.
    body_left: usize,
}

impl Frames {
    /// Scans bytes just read, calling `admit(tag, frame length)` on each complete
    /// header; the first refusal ends the scan.
    fn scan(
        &mut self,
        mut bytes: &[u8],
        mut admit: impl FnMut(u8, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 5 {
                break;
            }
            self.have = 0;
            let len = u32::from_be_bytes([
                self.header[1],
                self.header[2],
                self.header[3],
                self.header[4],
            ]) as usize;
            if len < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "invalid message length from PostgreSQL",
                ));
            }
            admit(self.header[0], len + 1)?;
            self.body_left = len - 4;
        }
        Ok(())
    }
}

/// A connection's socket, charging each backend message to the connection's
/// [`Budget`] as its header arrives (see the module doc).
pub struct Metered<S> {
    inner: S,
    frames: Frames,
    budget: Arc<Budget>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, budget: Arc<Budget>) -> Self {
        Self {
            inner,
            frames: Frames::default(),
            budget,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let budget = &this.budget;
        let scanned = this.frames.scan(&buf.filled()[before..], |tag, frame| {
            budget.admit(tag, frame).map_err(io::Error::other)
        });
        if let Err(e) = scanned {
            // Not even the bytes before the refused header are handed on: the read
            // fails as a whole, and the connection with it.
            buf.set_filled(before);
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers `Frames` finds when `stream` arrives in pieces of `chunk` bytes.
    fn headers(stream: &[u8], chunk: usize) -> Vec<(u8, usize)> {
        let mut frames = Frames::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(chunk) {
            frames
                .scan(piece, |tag, len| {
                    seen.push((tag, len));
                    Ok(())
                })
                .unwrap();
        }
        seen
    }

    fn message(tag: u8, body: usize) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body as u32 + 4).to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body));
        m
    }

    #[test]
    fn headers_are_found_however_the_bytes_are_split() {
        let stream: Vec<u8> = [message(b'T', 30), message(b'D', 0), message(b'D', 300)].concat();
        for chunk in [1, 2, 3, 4, 5, 6, 7, 64, 4096] {
            assert_eq!(
                headers(&stream, chunk),
                [(b'T', 35), (b'D', 5), (b'D', 305)],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_refused_header_stops_the_scan_and_a_bad_length_is_an_error() {
        let stream = [message(b'D', 10), message(b'D', 1000), message(b'D', 1)].concat();
        let mut frames = Frames::default();
        let mut seen = 0;
        let err = frames
            .scan(&stream, |_, len| {
                seen += 1;
                if len > 100 {
                    Err(io::Error::other(Trip::TooLarge))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!(seen, 2);
        assert!(err.to_string().contains("byte budget"), "{err}");
        let mut frames = Frames::default();
        assert!(frames.scan(&[b'D', 0, 0, 0, 3], |_, _| Ok(())).is_err());
    }

    #[test]
    fn rows_are_kept_up_to_the_limit_and_memory_comes_back() {
        let memory = ResultMemory::new(1000);
        let budget = Budget::new(memory.clone());
        let reserved = Held::default();
        let metering = budget.begin(600, reserved);
        for _ in 0..5 {
            budget.admit(DATA_ROW, 100).unwrap();
        }
        assert_eq!(memory.available(), 500);
        // Past the rows it keeps, a request only lets messages pass: each must fit.
        metering.stop_keeping();
        for _ in 0..10 {
            budget.admit(DATA_ROW, 100).unwrap();
        }
        assert_eq!(memory.available(), 400, "kept 500, and 100 passing");
        assert_eq!(budget.admit(DATA_ROW, 101), Err(Trip::TooLarge));
        assert_eq!(metering.tripped(), Some(Trip::TooLarge));
        assert_eq!(budget.admit(b'C', 1), Err(Trip::TooLarge), "for good");
        let held = metering.finish();
        assert_eq!(held.bytes(), 600);
        drop(held);
        assert_eq!(memory.available(), 1000);
    }

    #[test]
    fn the_shared_memory_bounds_all_requests_together() {
        let memory = ResultMemory::new(1000);
        let (a, b) = (Budget::new(memory.clone()), Budget::new(memory.clone()));
        let ma = a.begin(900, Held::default());
        let mb = b.begin(900, Held::default());
        a.admit(DATA_ROW, 700).unwrap();
        assert_eq!(b.admit(DATA_ROW, 400), Err(Trip::Busy));
        assert_eq!(mb.tripped(), Some(Trip::Busy));
        drop(ma);
        assert_eq!(
            memory.available(),
            1000,
            "a dropped request gives back at once"
        );
        drop(mb);
        // Between requests, messages are bounded one by one.
        let idle = Budget::new(memory);
        idle.admit(b'S', IDLE_MESSAGE_LIMIT).unwrap();
        assert_eq!(
            idle.admit(DATA_ROW, IDLE_MESSAGE_LIMIT + 1),
            Err(Trip::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_reservation_waits_then_gives_up() {
        let memory = ResultMemory::new(100);
        let all = memory.reserve(500, Duration::from_secs(1)).await.unwrap();
        assert_eq!(all.bytes(), 100, "no more than the whole budget");
        assert!(memory.reserve(1, Duration::from_millis(20)).await.is_none());
        drop(all);
        assert!(memory.reserve(1, Duration::from_millis(20)).await.is_some());
    }
}
