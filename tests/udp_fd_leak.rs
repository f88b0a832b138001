//! The fd-leak check for UDP sockets, in a test binary of its own so no other
//! test opens or closes descriptors while it counts.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use aioloop::net::UdpSocket;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn sockets_give_their_descriptors_back() {
    let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    aioloop::run(async move {
        // Warm up whatever the loop opens lazily before taking the baseline.
        drop(UdpSocket::bind(v4).unwrap());
        let before = open_fds();
        let lp = aioloop::get_running_loop().unwrap();
        let mut sockets = Vec::new();
        for i in 0..200 {
            sockets.push(Rc::new(
                UdpSocket::bind(if i % 2 == 0 { v4 } else { v6 }).unwrap(),
            ));
        }
        assert!(open_fds() >= before + 200);
        // Some of them have a task waiting to receive when they are dropped.
        let mut waiting = Vec::new();
        for s in sockets.iter().take(50) {
            let s = s.clone();
            waiting.push(lp.create_task(async move {
                let mut buf = [0; 8];
                let _ = s.recv_from(&mut buf).await;
            }));
        }
        aioloop::sleep(Duration::from_millis(1)).await;
        for t in &waiting {
            t.cancel();
        }
        for t in waiting {
            let _ = t.await;
        }
        // Others exchange a datagram first (same family: two apart).
        for i in 50..58 {
            let to = sockets[i + 2].local_addr().unwrap();
            sockets[i].send_to(b"x", to).await.unwrap();
        }
        drop(sockets);
        let after = open_fds();
        assert!(
            after <= before + 2,
            "{} descriptors were not closed ({before} before, {after} after)",
            after - before
        );
    })
    .unwrap();
}
