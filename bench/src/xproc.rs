//! The cross-process TCP echo benchmark: each runtime's echo server in its
//! own process pinned to one CPU, driven by ONE shared load client (the same
//! for every server) in another process pinned to the other CPU. The figure
//! is the server's CPU time per echoed message, read from the kernel's
//! per-thread accounting of the server process (`/proc/PID/task/*/schedstat`,
//! nanoseconds), so it counts exactly what the server spent, user and
//! kernel, whatever the client and the rest of the machine were doing.
//!
//! Three roles, all in this binary:
//!
//! - the benchmark body ([`xproc_echo`]), run inside the usual `--child`
//!   process: starts the server and the client, parses the client's line,
//!   kills the server;
//! - `--echo-server RUNTIME MODE` ([`serve`]): binds 127.0.0.1:0, prints
//!   `listening on ADDR`, echoes until killed (`MODE`: `streams` = a task per
//!   connection reading into a 64 KiB buffer and `write_all`ing it back;
//!   `protocols` = aioloop's `create_server` with an echo protocol);
//! - `--echo-client ADDR CONNS MSG MILLIS SERVER_PID` ([`client`]): a plain
//!   `mio` loop (no runtime under test) keeping one message in flight on
//!   each connection; after a warm-up it counts round trips for MILLIS ms,
//!   sampling the server's CPU at the start and end of each of `SLICES`
//!   equal slices, and prints one `CLIENT` line whose figure is the median
//!   slice's server CPU per message.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::benches::{Outcome, Size};
use crate::runtimes::{self, Runtime};

/// The CPU the server is pinned to, and the client's.
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";
/// How long the client runs before it starts counting.
const WARM_UP: Duration = Duration::from_millis(300);
/// The counted window is cut into this many equal slices, each measured on
/// its own (server CPU per message); the figure is their median, so a
/// burst of something else on the machine during one slice moves it little.
const SLICES: u32 = 10;
/// The streams echo server's read buffer (as in the in-process benchmarks).
const ECHO_BUF: usize = 64 * 1024;

/// How the server under test is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A task per connection: `read` into a buffer, `write_all` it back.
    Streams,
    /// aioloop's protocol API (`create_server`), no task per connection.
    /// Runtimes without it serve with [`Mode::Streams`].
    Protocols,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Streams => "streams",
            Mode::Protocols => "protocols",
        }
    }

    /// Parses a `--echo-server` mode.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "streams" => Ok(Mode::Streams),
            "protocols" => Ok(Mode::Protocols),
            other => Err(format!("unknown echo mode {other:?}: streams or protocols")),
        }
    }
}

// ---------------------------------------------------------------------------
// The benchmark body (inside a `--child` process)

/// Kills and reaps the server however the body ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pinned(cpu: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu).arg(exe);
    c
}

/// `conns` connections with `msg`-byte messages against runtime `R`'s echo
/// server written as `mode`, counted for `s.n` milliseconds. One op = one
/// echoed message; the value is server CPU ns per message.
pub fn xproc_echo<R: Runtime>(s: Size, mode: Mode, conns: usize, msg: usize) -> Outcome {
    let mut server = ServerGuard(
        pinned(SERVER_CPU)
            .args(["--echo-server", R::NAME, mode.as_str()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo server (is `taskset` installed?)"),
    );
    let pid = server.0.id();
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("read the server's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the echo server said {line:?}, not `listening on ADDR`"))
        .to_string();
    let out = pinned(CLIENT_CPU)
        .args([
            "--echo-client",
            &addr,
            &conns.to_string(),
            &msg.to_string(),
            &s.n.to_string(),
            &pid.to_string(),
        ])
        .output()
        .expect("run the load client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the load client failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: HashMap<&str, f64> = stdout
        .lines()
        .find(|l| l.starts_with("CLIENT "))
        .unwrap_or_else(|| panic!("no CLIENT line from the load client: {stdout}"))
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    let get = |k: &str| {
        *fields
            .get(k)
            .unwrap_or_else(|| panic!("CLIENT line lacks {k}"))
    };
    let (msgs, window_ns, cpu_ns) = (get("msgs"), get("window_ns"), get("server_cpu_ns"));
    let (user, sys) = (get("server_user_ticks"), get("server_sys_ticks"));
    let (median, lo, hi) = (
        get("slice_median_ns_per_msg"),
        get("slice_min_ns_per_msg"),
        get("slice_max_ns_per_msg"),
    );
    drop(server);
    assert!(msgs > 0.0, "no message was echoed in {window_ns} ns");
    assert!(
        get("slices") > 0.0,
        "no slice of the window counted a message"
    );
    Outcome {
        value: median,
        ops: msgs as u64,
        elapsed_ns: window_ns as u128,
        peak_rss_kb: 0,
        extra: format!(
            "window_ns_per_msg={:.0},slice_min={lo:.0},slice_max={hi:.0},\
             msgs_per_s={:.0},server_cpu_share={:.2},server_user_share={:.2},\
             client_wall_ns_per_msg={:.0}",
            cpu_ns / msgs,
            msgs / (window_ns / 1e9),
            cpu_ns / window_ns,
            if user + sys > 0.0 {
                user / (user + sys)
            } else {
                0.0
            },
            window_ns / msgs
        ),
    }
}

// ---------------------------------------------------------------------------
// The server (`--echo-server RUNTIME MODE`)

/// Runs the echo server of runtime `name` until the process is killed.
pub fn serve_by_name(name: &str, mode: Mode) -> Result<(), String> {
    let r = runtimes::find(name).ok_or_else(|| format!("unknown runtime {name:?}"))?;
    (r.serve)(mode);
    Ok(())
}

/// Runtime `R`'s echo server (see the module doc).
pub fn serve<R: Runtime>(mode: Mode) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    R::block_on(|h| async move {
        if mode == Mode::Protocols && R::NATIVE_PROTOCOLS {
            let lp = R::event_loop(&h);
            let server = lp
                .create_server(crate::benches::EchoProtocol::default, "127.0.0.1", 0)
                .await
                .expect("create_server");
            announce(SocketAddr::from((
                [127, 0, 0, 1],
                server.sockets()[0].port(),
            )));
            server.serve_forever().await;
            return;
        }
        let (listener, addr) = R::tcp_bind(&h, lo).await.expect("tcp bind");
        announce(addr);
        loop {
            let Ok(mut s) = R::tcp_accept(&listener).await else {
                continue;
            };
            R::spawn_detached(&h, async move {
                let mut buf = vec![0u8; ECHO_BUF];
                loop {
                    match R::read(&mut s, &mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if R::write_all(&mut s, &buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

fn announce(addr: SocketAddr) {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}").expect("stdout");
    out.flush().expect("stdout");
}

// ---------------------------------------------------------------------------
// The shared load client (`--echo-client ADDR CONNS MSG MILLIS SERVER_PID`)

/// CPU time the process `pid` has used so far, in ns: the sum over its
/// threads of `/proc/PID/task/TID/schedstat`'s first field.
fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A thread that just ended.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("{}: unexpected {text:?}", path.display())))?;
    }
    Ok(total)
}

/// User and system CPU time of process `pid` so far, in clock ticks
/// (`/proc/PID/stat` fields 14 and 15; usually 100 per second): coarse, but
/// it splits the schedstat total into the runtime's own work and the
/// kernel's.
fn process_user_sys_ticks(pid: u32) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))
    };
    // After the `)`, field 3 (state) is index 0, so field 14 is index 11.
    Ok((num(11)?, num(12)?))
}

struct Conn {
    stream: mio::net::TcpStream,
    /// Bytes of the current message written so far.
    sent: usize,
    /// Bytes of its echo received so far.
    got: usize,
}

/// Runs the load client; see the module doc. Prints
/// `CLIENT msgs=N window_ns=W server_cpu_ns=C ...` with the median (and the
/// extremes) of the server CPU ns per message over the window's slices.
pub fn client(args: &[String]) -> Result<(), String> {
    let [addr, conns, msg, millis, pid] = args else {
        return Err("--echo-client needs ADDR CONNS MSG MILLIS SERVER_PID".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("ADDR {addr:?}: {e}"))?;
    let num = |what: &str, v: &str| v.parse::<u64>().map_err(|e| format!("{what} {v:?}: {e}"));
    let conns = num("CONNS", conns)? as usize;
    let msg = num("MSG", msg)? as usize;
    let window = Duration::from_millis(num("MILLIS", millis)?);
    let pid = num("SERVER_PID", pid)? as u32;
    run_client(addr, conns, msg, window, pid).map_err(|e| format!("load client: {e}"))
}

fn run_client(
    addr: SocketAddr,
    conns: usize,
    msg: usize,
    window: Duration,
    pid: u32,
) -> io::Result<()> {
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(1024);
    let out: Vec<u8> = (0..msg).map(|i| i as u8).collect();
    let mut back = vec![0u8; msg.max(1) * 4];
    let mut list = Vec::with_capacity(conns);
    for i in 0..conns {
        let std = std::net::TcpStream::connect(addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(std);
        poll.registry().register(
            &mut stream,
            mio::Token(i),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        list.push(Conn {
            stream,
            sent: 0,
            got: 0,
        });
    }
    let started = Instant::now();
    let mut counting: Option<(Instant, u64, (u64, u64))> = None;
    let mut msgs = 0u64;
    // The current slice's start: when, the server's CPU, `msgs`; and the
    // server CPU ns per message of every slice so far.
    let mut slice = (started, 0u64, 0u64);
    let mut per_msg: Vec<f64> = Vec::with_capacity(SLICES as usize + 1);
    // Kick every connection off; after that each is driven by its events.
    let mut ready: Vec<usize> = (0..conns).collect();
    loop {
        for &i in &ready {
            let c = &mut list[i];
            loop {
                // Write what is left of the current message.
                while c.sent < msg {
                    match c.stream.write(&out[c.sent..]) {
                        Ok(n) => c.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                // Read its echo.
                let mut progressed = false;
                while c.got < msg {
                    match c.stream.read(&mut back[..msg - c.got]) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the server closed a connection",
                            ))
                        }
                        Ok(n) => {
                            if back[..n] != out[c.got..c.got + n] {
                                return Err(io::Error::other("the echo differs from the message"));
                            }
                            c.got += n;
                            progressed = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if c.sent == msg && c.got == msg {
                    msgs += 1;
                    c.sent = 0;
                    c.got = 0;
                    continue; // next message on this connection at once
                }
                if !progressed {
                    break;
                }
            }
        }
        let now = Instant::now();
        match counting {
            None if now - started >= WARM_UP => {
                let cpu = process_cpu_ns(pid)?;
                counting = Some((now, cpu, process_user_sys_ticks(pid)?));
                slice = (now, cpu, 0);
                msgs = 0;
            }
            Some((t0, cpu0, (u0, s0))) => {
                let whole = now - t0 >= window;
                if whole || now - slice.0 >= window / SLICES {
                    let cpu = process_cpu_ns(pid)?;
                    let n = msgs - slice.2;
                    if n > 0 {
                        per_msg.push((cpu - slice.1) as f64 / n as f64);
                    }
                    slice = (now, cpu, msgs);
                }
                if whole {
                    let cpu1 = slice.1;
                    let (u1, s1) = process_user_sys_ticks(pid)?;
                    per_msg.sort_by(f64::total_cmp);
                    let (median, min, max) = match per_msg.len() {
                        0 => (0.0, 0.0, 0.0),
                        n => (per_msg[n / 2], per_msg[0], per_msg[n - 1]),
                    };
                    println!(
                        "CLIENT msgs={msgs} window_ns={} server_cpu_ns={} server_user_ticks={} \
                         server_sys_ticks={} slices={} slice_median_ns_per_msg={median:.1} \
                         slice_min_ns_per_msg={min:.1} slice_max_ns_per_msg={max:.1}",
                        (now - t0).as_nanos(),
                        cpu1 - cpu0,
                        u1 - u0,
                        s1 - s0,
                        per_msg.len(),
                    );
                    return Ok(());
                }
            }
            _ => {}
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        ready.clear();
        ready.extend(events.iter().map(|e| e.token().0));
    }
}
