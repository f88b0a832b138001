//! A minimal HTTP/1.1 keep-alive responder that `wrk` can load:
//! every request gets `200 OK` with the body `Hello, world!`.
//!
//! ```sh
//! cargo run --release --example http_hello -- 127.0.0.1:8080
//! wrk -t1 -c64 -d10s http://127.0.0.1:8080/
//! ```
//!
//! The first argument is the listen address (default `127.0.0.1:8080`; port 0
//! picks a free one). The first line printed is `listening on <addr>`, once
//! the server accepts connections. Ctrl-C stops it.
//!
//! It understands just enough HTTP for load tests: requests without a body,
//! pipelined or one at a time, on keep-alive connections.

use std::net::SocketAddr;

use aioloop::net::{TcpListener, TcpStream};
use futures::io::{AsyncReadExt, AsyncWriteExt};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";

async fn serve(mut conn: TcpStream) -> Result<(), aioloop::Error> {
    let mut buf = vec![0; 8 * 1024];
    let mut filled = 0;
    let mut out = Vec::with_capacity(RESPONSE.len() * 4);
    loop {
        if filled == buf.len() {
            // A request head larger than the buffer: not for this toy parser.
            return Ok(());
        }
        let n = conn.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        // Answer every complete request head in the buffer (pipelining).
        let mut start = 0;
        while let Some(end) = find(&buf[start..filled], b"\r\n\r\n") {
            out.extend_from_slice(RESPONSE);
            start += end + 4;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if !out.is_empty() {
            conn.write_all(&out).await?;
            out.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
            let (conn, _) = listener.accept().await?;
            conn.set_nodelay(true)?;
            lp.create_task(async move {
                let _ = serve(conn).await;
            })
            .detach();
        }
    })?
}
