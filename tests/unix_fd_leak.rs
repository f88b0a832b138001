//! The fd-leak check for Unix domain sockets, in a test binary of its own so
//! no other test opens or closes descriptors while it counts.
#![cfg(target_os = "linux")]

use std::time::Duration;

use aioloop::net::{UnixDatagram, UnixListener, UnixStream};
use futures::io::{AsyncReadExt, AsyncWriteExt};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn unix_sockets_give_their_descriptors_back() {
    let path =
        std::env::temp_dir().join(format!("aioloop-test-fd-leak-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = path.clone();
    aioloop::run(async move {
        // Warm up whatever the loop opens lazily before taking the baseline.
        drop(UnixStream::pair().unwrap());
        let before = open_fds();

        let listener = UnixListener::bind(&p).unwrap();
        let lp = aioloop::get_running_loop().unwrap();
        let server = lp.create_task(async move {
            let mut conns = Vec::new();
            for _ in 0..50 {
                let (mut c, _) = listener.accept().await.unwrap();
                let mut b = [0; 1];
                c.read_exact(&mut b).await.unwrap();
                c.write_all(&b).await.unwrap();
                conns.push(c);
            }
            conns
        });
        let mut clients = Vec::new();
        for i in 0..50u8 {
            let mut c = UnixStream::connect(&p).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            let mut b = [0; 1];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i);
            clients.push(c);
        }
        let conns = aioloop::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        let mut others = Vec::new();
        for _ in 0..25 {
            others.push(UnixStream::pair().unwrap());
        }
        let mut dgrams = Vec::new();
        for _ in 0..25 {
            dgrams.push(UnixDatagram::pair().unwrap());
        }
        for _ in 0..25 {
            dgrams.push((
                UnixDatagram::unbound().unwrap(),
                UnixDatagram::unbound().unwrap(),
            ));
        }
        // 100 stream ends + 50 pair ends + 100 datagram sockets (the
        // listener went with the server task).
        assert!(open_fds() >= before + 250);
        drop((clients, conns, others, dgrams));
        let after = open_fds();
        assert!(
            after <= before + 2,
            "{} descriptors were not closed ({before} before, {after} after)",
            after - before
        );
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
}
