//! A client connection from a chosen local address (every 127.x.y.z is this host), as
//! a client at that address would make it: what the network tests hold pg_hba.conf's
//! lines to.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;

/// Connects with `config` (user, password, database, its first port on 127.0.0.1) from
/// the local address `from`.
pub async fn connect(
    config: &tokio_postgres::Config,
    from: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let port = config.get_ports()[0];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream = socket
        .connect(SocketAddr::new("127.0.0.1".parse().unwrap(), port))
        .await
        .unwrap();
    let (client, conn) = config.connect_raw(stream, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// `e` is pg_hba.conf's refusal (SQLSTATE 28000), not another failure.
pub fn refused_by_hba(e: &tokio_postgres::Error) {
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(code.as_deref(), Some("28000"), "{e}");
}
