//! An echo server on `aioloop::net` streams: one task per connection.
//!
//! ```sh
//! cargo run --release --example echo_server -- 127.0.0.1:8080
//! ```
//!
//! The first argument is the listen address (default `127.0.0.1:8080`; port 0
//! picks a free one). The first line printed is `listening on <addr>`, once
//! the server accepts connections. Ctrl-C stops it.

use std::net::SocketAddr;

use aioloop::net::{TcpListener, TcpStream};
use futures::io::{AsyncReadExt, AsyncWriteExt};

async fn echo(mut conn: TcpStream) -> Result<(), aioloop::Error> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            // The client closed its side: flush and close ours.
            conn.close().await?;
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()?;
    aioloop::run(async move {
        let lp = aioloop::get_running_loop()?;
        let listener = TcpListener::bind(addr)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (conn, peer) = listener.accept().await?;
            conn.set_nodelay(true)?;
            lp.create_task(async move {
                if let Err(e) = echo(conn).await {
                    eprintln!("{peer}: {e}");
                }
            })
            .detach();
        }
    })?
}
