//! A session whose end can be waited for: [`Closing::close`] returns once the server
//! process is gone, not when the client stopped talking.
//!
//! `ALTER DATABASE ... RENAME` refuses while another backend is in the database, and
//! when one is still exiting it sleeps 100 ms before it looks again. A backend leaves
//! its socket open until the process exits ("so clients can perform a synchronous
//! close", PostgreSQL's `socket_close`), after it has left the process array that the
//! rename looks at: a client that reads its socket to the end after `Terminate` knows
//! the database is free.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::PgError;

/// How long [`Closing::close`] waits for the server's end before it gives up waiting
/// (the session is closed either way).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A client, and the task that drives its connection to the end of its socket.
pub struct Closing {
    pub client: Client,
    driver: JoinHandle<()>,
}

impl Closing {
    /// Ends the session and waits until its server process has exited (at most
    /// [`CLOSE_WAIT`]), or until `gone` (the caller's own evidence that the process
    /// has left, such as PostgreSQL's activity view) ends, whichever is first: the end
    /// of the socket comes only once the process has exited, about 3 ms after it left
    /// the activity view on a 2-core machine (docs/warm_pool.md).
    pub async fn close(self, gone: impl std::future::Future<Output = ()>) {
        drop(self.client);
        tokio::select! {
            _ = tokio::time::timeout(CLOSE_WAIT, self.driver) => {}
            () = gone => {}
        }
    }
}

/// Connects as [`super::connect`] does (no TLS), to the first host `config` names,
/// within its `connect_timeout` (the socket and the startup both).
pub async fn connect(config: &Config) -> Result<Closing, PgError> {
    let limit = config.get_connect_timeout().copied().unwrap_or(CLOSE_WAIT);
    tokio::time::timeout(limit, connect_now(config))
        .await
        .unwrap_or_else(|_| {
            Err(PgError::Socket(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no session within {limit:?}"),
            )))
        })
}

async fn connect_now(config: &Config) -> Result<Closing, PgError> {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let socket = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            let addr = match config.get_hostaddrs().first() {
                Some(ip) => TcpStream::connect((*ip, port)).await,
                None => TcpStream::connect((host.as_str(), port)).await,
            };
            let s = addr.map_err(PgError::Socket)?;
            s.set_nodelay(true).map_err(PgError::Socket)?;
            Socket::Tcp(s)
        }
        Some(Host::Unix(dir)) => Socket::Unix(
            UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                .await
                .map_err(PgError::Socket)?,
        ),
        None => {
            return Err(PgError::Socket(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the database URL names no host",
            )))
        }
    };
    let stream = Draining {
        socket,
        write_shut: false,
    };
    let (client, conn) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(PgError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(Closing { client, driver })
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket whose shutdown (after the client's `Terminate`) completes only once the
/// server has closed its end.
struct Draining {
    socket: Socket,
    write_shut: bool,
}

impl Draining {
    fn inner(&mut self) -> Pin<&mut dyn AsyncReadWrite> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s),
            Socket::Unix(s) => Pin::new(s),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

impl AsyncRead for Draining {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for Draining {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_shut {
            ready!(self.inner().poll_shutdown(cx))?;
            self.write_shut = true;
        }
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(self.inner().poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => continue,
                // A reset is an end too.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}
