//! The sockets of data API connections, opened here rather than by tokio-postgres so
//! that each connection's stream can be wrapped in its byte budget
//! ([`super::budget::Metered`]) before tokio-postgres reads a byte of it; and, since a
//! client made with `connect_raw` does not know where its server is, the cancel
//! requests sent for those connections.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::{CancelToken, Config, NoTls};

/// One place PostgreSQL listens.
#[derive(Debug, Clone)]
enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    Ip {
        addr: IpAddr,
        port: u16,
    },
    /// The socket file `<dir>/.s.PGSQL.<port>`.
    Unix(PathBuf),
}

/// Where a connection config says PostgreSQL listens, tried in order (as libpq and
/// tokio-postgres do with several hosts).
#[derive(Debug, Clone)]
pub struct Targets {
    list: Vec<Target>,
    timeout: Option<Duration>,
}

impl Targets {
    /// The hosts (or `hostaddr`s) and ports of `config`: one port for all hosts, or
    /// one per host; 5432 if none.
    pub fn from_config(config: &Config) -> Self {
        let hosts = config.get_hosts();
        let addrs = config.get_hostaddrs();
        let ports = config.get_ports();
        let port = |i: usize| match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        };
        let list = (0..hosts.len().max(addrs.len()))
            .filter_map(|i| match (addrs.get(i), hosts.get(i)) {
                // hostaddr, when given, is where to connect; host is then only a name.
                (Some(addr), _) => Some(Target::Ip {
                    addr: *addr,
                    port: port(i),
                }),
                (None, Some(Host::Tcp(host))) => Some(Target::Tcp {
                    host: host.clone(),
                    port: port(i),
                }),
                (None, Some(Host::Unix(dir))) => {
                    Some(Target::Unix(dir.join(format!(".s.PGSQL.{}", port(i)))))
                }
                (None, None) => None,
            })
            .collect();
        Self {
            list,
            timeout: config.get_connect_timeout().copied(),
        }
    }

    /// A socket to the first target that answers (each within the config's connect
    /// timeout); the last error if none does.
    pub async fn connect(&self) -> io::Result<Socket> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no host to connect to");
        for target in &self.list {
            let attempt = async {
                match target {
                    Target::Tcp { host, port } => {
                        tcp(TcpStream::connect((host.as_str(), *port)).await?)
                    }
                    Target::Ip { addr, port } => tcp(TcpStream::connect((*addr, *port)).await?),
                    Target::Unix(path) => Ok(Socket::Unix(UnixStream::connect(path).await?)),
                }
            };
            let done = match self.timeout {
                Some(t) => tokio::time::timeout(t, attempt)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
                None => attempt.await,
            };
            match done {
                Ok(socket) => return Ok(socket),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Small requests and answers both ways: no Nagle delay (as tokio-postgres sets).
fn tcp(stream: TcpStream) -> io::Result<Socket> {
    stream.set_nodelay(true)?;
    Ok(Socket::Tcp(stream))
}

/// Why a cancel request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("connecting to send a cancel request: {0}")]
    Connect(#[source] io::Error),
    #[error("sending a cancel request: {0}")]
    Send(#[source] tokio_postgres::Error),
}

/// Asks PostgreSQL to cancel what the connection of `token` is running, over a new
/// socket to the same server (`CancelToken::cancel_query` cannot: it needs the
/// socket config a `connect_raw` client lacks).
pub async fn cancel(targets: &Targets, token: &CancelToken) -> Result<(), CancelError> {
    let socket = targets.connect().await.map_err(CancelError::Connect)?;
    token
        .cancel_query_raw(socket, NoTls)
        .await
        .map_err(CancelError::Send)
}

/// A TCP or Unix-domain socket to PostgreSQL.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(dsn: &str) -> Vec<String> {
        let config: Config = dsn.parse().unwrap();
        Targets::from_config(&config)
            .list
            .iter()
            .map(|t| match t {
                Target::Tcp { host, port } => format!("tcp {host}:{port}"),
                Target::Ip { addr, port } => format!("ip {addr}:{port}"),
                Target::Unix(path) => format!("unix {}", path.display()),
            })
            .collect()
    }

    #[test]
    fn hosts_ports_and_socket_dirs() {
        assert_eq!(
            targets("host=/run/pg port=5433 user=x"),
            ["unix /run/pg/.s.PGSQL.5433"]
        );
        assert_eq!(targets("host=db user=x"), ["tcp db:5432"]);
        assert_eq!(targets("host=a,b port=1,2 user=x"), ["tcp a:1", "tcp b:2"]);
        assert_eq!(
            targets("host=a,/tmp port=7 user=x"),
            ["tcp a:7", "unix /tmp/.s.PGSQL.7"]
        );
        assert_eq!(
            targets("host=db hostaddr=10.0.0.1 port=6 user=x"),
            ["ip 10.0.0.1:6"]
        );
    }
}
