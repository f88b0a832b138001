//! `getaddrinfo` / `getnameinfo` on the loop's executor: answers, errors,
//! and a loop that keeps running while a lookup is in flight. No test needs
//! the internet: names are `localhost` and `.invalid` (RFC 6761).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};

/// Every lookup here is bounded: a resolver that hangs fails the test.
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn localhost_resolves_to_a_loopback_address() {
    let lp = EventLoop::new().unwrap();
    let addrs = lp
        .run_until_complete(aioloop::timeout(LIMIT, lp.getaddrinfo("localhost", 80)))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 80),
        "{addrs:?}"
    );
    lp.close().unwrap();
}

#[test]
fn ip_literals_resolve_to_themselves() {
    let lp = EventLoop::new().unwrap();
    let got = lp
        .run_until_complete(lp.getaddrinfo("127.0.0.1", 0))
        .unwrap()
        .unwrap();
    assert_eq!(got, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
    for v6 in ["::1", "[::1]"] {
        let got = lp
            .run_until_complete(lp.getaddrinfo(v6, 443))
            .unwrap()
            .unwrap();
        assert_eq!(got, vec!["[::1]:443".parse::<SocketAddr>().unwrap()]);
    }
    lp.close().unwrap();
}

#[test]
fn an_unknown_name_is_an_io_error_naming_it() {
    let lp = EventLoop::new().unwrap();
    let err = lp
        .run_until_complete(aioloop::timeout(
            LIMIT,
            lp.getaddrinfo("no-such-host.invalid", 80),
        ))
        .unwrap()
        .expect("the resolver answered within 30 s")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    assert!(err.io_error().is_some());
    lp.close().unwrap();
}

#[test]
fn getnameinfo_of_loopback_has_a_host_and_a_service() {
    let lp = EventLoop::new().unwrap();
    let (host, service) = lp
        .run_until_complete(aioloop::timeout(
            LIMIT,
            lp.getnameinfo("127.0.0.1:80".parse().unwrap()),
        ))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!host.is_empty());
    assert!(service == "http" || service == "80", "{service}");
    lp.close().unwrap();
}

#[test]
fn getnameinfo_of_an_unnamed_port_is_numeric() {
    let lp = EventLoop::new().unwrap();
    let (host, service) = lp
        .run_until_complete(aioloop::timeout(
            LIMIT,
            lp.getnameinfo("127.0.0.1:54321".parse().unwrap()),
        ))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!host.is_empty());
    assert_eq!(service, "54321");
    lp.close().unwrap();
}

#[test]
fn the_loop_keeps_running_while_a_lookup_is_in_flight() {
    let lp = EventLoop::new().unwrap();
    let ticks = Rc::new(Cell::new(0u32));
    let t = ticks.clone();
    let lookup = lp.getaddrinfo("localhost", 8080);
    let addrs = lp
        .run_until_complete(async {
            // The lookup is a task of its own ('static future); meanwhile
            // other callbacks keep running on the loop.
            let task = lp.create_task(lookup);
            let lp2 = lp.clone();
            fn tick(lp: EventLoop, t: Rc<Cell<u32>>) {
                t.set(t.get() + 1);
                let lp2 = lp.clone();
                let _ = lp.call_soon(move || tick(lp2, t));
            }
            lp.call_soon(move || tick(lp2, t)).unwrap();
            aioloop::timeout(LIMIT, task).await
        })
        .unwrap()
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    assert!(ticks.get() > 0, "callbacks ran during the lookup");
    lp.close().unwrap();
}

#[test]
fn a_closed_loop_reports_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    use futures::executor::block_on;
    for host in ["localhost", "127.0.0.1"] {
        let err = block_on(lp.getaddrinfo(host, 80)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
    }
    let err = block_on(lp.getnameinfo("127.0.0.1:80".parse().unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
}
