//! An echo server on the protocol/transport API: one callback-driven
//! protocol object per connection, no task per connection.
//!
//! ```text
//! cargo run --release --example echo_protocol -- 127.0.0.1:8080
//! ```
//!
//! The first argument is the listen address (default `127.0.0.1:8080`; port 0
//! picks a free one). The first line printed is `listening on <addr>`, once
//! the server accepts connections. Ctrl-C stops it.

use std::net::SocketAddr;

use aioloop::net::{Protocol, Transport};

#[derive(Default)]
struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.0 = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.0 {
            // Fails only once the connection is closing: nothing to do then.
            let _ = t.write(data);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()?;
    aioloop::run(async move {
        let lp = aioloop::get_running_loop()?;
        let host = addr.ip().to_string();
        let server = lp.create_server(Echo::default, &host, addr.port()).await?;
        println!("listening on {}", server.sockets()[0]);
        server.serve_forever().await;
        Ok::<_, aioloop::Error>(())
    })??;
    Ok(())
}
