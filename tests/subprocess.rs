//! Subprocesses and pipes on the loop (Unix).
#![cfg(unix)]

use std::time::{Duration, Instant};

use aioloop::process::{Command, Stdio};
use aioloop::{ErrorKind, EventLoop};
use futures::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

fn run<F: std::future::Future>(f: F) -> F::Output {
    aioloop::run(async move { aioloop::timeout(LIMIT, f).await.expect("timed out") }).unwrap()
}

#[test]
fn echo_output_is_read_byte_exact() {
    let (out, status) = run(async {
        let mut child = Command::new("echo")
            .arg("hi")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        (out, child.wait().await.unwrap())
    });
    assert_eq!(out, b"hi\n");
    assert!(status.success());
}

#[test]
fn cat_echoes_a_mebibyte_written_and_read_concurrently() {
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let expected = payload.clone();
    let got = run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let writer = lp.create_task(async move {
            stdin.write_all(&payload).await.unwrap();
            stdin.close().await.unwrap();
        });
        let reader = lp.create_task(async move {
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).await.unwrap();
            got
        });
        writer.await.unwrap();
        let got = reader.await.unwrap();
        assert!(child.wait().await.unwrap().success());
        got
    });
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the echoed bytes differ");
}

#[test]
fn exit_codes_are_reported() {
    run(async {
        let lp = aioloop::get_running_loop().unwrap();
        for code in [0, 1, 3, 255] {
            let mut child = lp.subprocess_shell(format!("exit {code}")).unwrap();
            let st = child.wait().await.unwrap();
            assert_eq!(st.code(), Some(code));
            assert_eq!(child.returncode(), Some(code));
        }
    });
}

#[test]
fn subprocess_exec_pipes_all_three() {
    run(async {
        let lp = aioloop::get_running_loop().unwrap();
        let mut child = lp
            .subprocess_exec("sh", ["-c", "read x; echo out-$x; echo err-$x >&2"])
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"42\n").await.unwrap();
        drop(stdin);
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert_eq!(out, "out-42\n");
        assert_eq!(err, "err-42\n");
        assert!(child.wait().await.unwrap().success());
    });
}

#[test]
fn killing_a_sleeper_ends_it_quickly() {
    use std::os::unix::process::ExitStatusExt;
    let elapsed = run(async {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        assert_eq!(child.returncode(), None);
        aioloop::sleep(Duration::from_millis(20)).await;
        assert_eq!(child.returncode(), None);
        let t = Instant::now();
        child.kill().unwrap();
        let st = child.wait().await.unwrap();
        assert_eq!(st.signal(), Some(9));
        assert_eq!(child.returncode(), Some(-9));
        // Killing a finished child is harmless.
        child.kill().unwrap();
        t.elapsed()
    });
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn the_loop_keeps_running_while_a_child_runs() {
    run(async {
        let lp = aioloop::get_running_loop().unwrap();
        let mut child = Command::new("sleep").arg("0.3").spawn().unwrap();
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0));
        let t = ticks.clone();
        let ticker = lp.create_task(async move {
            loop {
                aioloop::sleep(Duration::from_millis(10)).await;
                t.set(t.get() + 1);
            }
        });
        assert!(child.wait().await.unwrap().success());
        ticker.cancel();
        assert!(ticks.get() >= 5, "only {} ticks", ticks.get());
    });
}

#[test]
fn a_missing_program_is_an_io_error_naming_it() {
    run(async {
        let e = Command::new("aioloop-no-such-program").spawn().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("aioloop-no-such-program"), "{e}");
    });
}

#[test]
fn spawning_needs_a_running_or_open_loop() {
    let e = Command::new("true").spawn().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoRunningLoop);
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let e = Command::new("true").spawn_on(&lp).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
}

#[test]
fn twenty_children_are_waited_for_concurrently() {
    let codes = run(async {
        let lp = aioloop::get_running_loop().unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(format!("sleep 0.0{}; exit {i}", i % 10))
                    .spawn()
                    .unwrap();
                lp.create_task(async move { child.wait().await.unwrap().code() })
            })
            .collect();
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        codes
    });
    assert_eq!(codes, (0..20).map(Some).collect::<Vec<_>>());
}

#[test]
fn children_on_loops_in_two_threads() {
    let threads: Vec<_> = (0..2)
        .map(|n| {
            std::thread::spawn(move || {
                run(async move {
                    let mut c = Command::new("sh")
                        .arg("-c")
                        .arg(format!("exit {}", 10 + n))
                        .spawn()
                        .unwrap();
                    c.wait().await.unwrap().code()
                })
            })
        })
        .collect();
    let codes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes, vec![Some(10), Some(11)]);
}

#[test]
fn pipes_connect_both_ways() {
    run(async {
        let (mut w, mut r) = aioloop::process::pipe().unwrap();
        let lp = aioloop::get_running_loop().unwrap();
        let writer = lp.create_task(async move {
            for i in 0..100u8 {
                w.write_all(&[i; 1000]).await.unwrap();
            }
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(got
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    });
}

#[test]
fn writing_after_close_is_an_error() {
    run(async {
        let (mut w, _r) = aioloop::process::pipe().unwrap();
        w.close().await.unwrap();
        let e = w.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    });
}
