//! Backend choice and backend-specific behaviour: which backend `Auto`
//! picks, the io_uring probe and its fallback (each refusal is simulated in a
//! child process, since the probe runs once per process), and the proactor's
//! own guarantees (operations in flight when futures are dropped or the loop
//! closes).

use std::process::Command;
use std::sync::Mutex;

use aioloop::{Backend, ErrorKind, EventLoop, EventLoopPolicy, ProactorEventLoopPolicy};

/// Set in the child processes this file starts.
const CHILD: &str = "AIOLOOP_BACKEND_TEST_CHILD";
const SIMULATE: &str = "AIOLOOP_URING_SIMULATE";

#[test]
fn prints_the_backend_of_this_run() {
    let lp = EventLoop::new().unwrap();
    // scripts/test.sh shows this line for each run of the suite.
    println!(
        "aioloop backend of this run: {} (AIOLOOP_BACKEND={:?})",
        lp.backend(),
        std::env::var("AIOLOOP_BACKEND").unwrap_or_default()
    );
    assert_ne!(lp.backend(), Backend::Auto);
    if let Ok(v) = std::env::var("AIOLOOP_BACKEND") {
        match v.as_str() {
            "selector" => assert_eq!(lp.backend(), Backend::Selector),
            "proactor" => assert_eq!(lp.backend(), Backend::Proactor),
            _ => {}
        }
    }
    lp.close().unwrap();
}

#[test]
fn an_explicit_selector_is_always_the_selector() {
    let lp = EventLoop::builder()
        .backend(Backend::Selector)
        .build()
        .unwrap();
    assert_eq!(lp.backend(), Backend::Selector);
    lp.close().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn an_explicit_proactor_is_io_uring_or_a_clear_error() {
    let simulated = std::env::var(SIMULATE).is_ok();
    match EventLoop::builder().backend(Backend::Proactor).build() {
        Ok(lp) => {
            assert!(!simulated);
            assert_eq!(lp.backend(), Backend::Proactor);
            let t = lp.create_task(async { 6 * 7 });
            assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), 42);
            lp.close().unwrap();
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.message().contains("io_uring"), "{e}");
        }
    }
}

// ---------------------------------------------------------------------------
// Each outcome of the probe, in a child process

/// Captures the log records of the child process.
struct Capture;
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

/// Runs `child_probe_outcome` in a fresh process with `env` set.
#[cfg(target_os = "linux")]
fn run_child(env: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_probe_outcome",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env_remove("AIOLOOP_BACKEND")
    .env_remove(SIMULATE);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child with {env:?} failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran its test:\n{text}");
}

/// The child: checks what `Auto`, `Proactor` and the policies do under the
/// environment its parent gave it. A no-op in the ordinary test run.
#[test]
fn child_probe_outcome() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let simulate = std::env::var(SIMULATE).ok();
    let forced = std::env::var("AIOLOOP_BACKEND").ok();
    let cause = match simulate.as_deref() {
        Some("enosys") => "ENOSYS",
        Some("eperm") => "EPERM",
        Some("disabled") => "io_uring_disabled",
        Some("noop-missing") => "NOP",
        Some(_) => "AIOLOOP_URING_SIMULATE",
        None => "",
    };
    let refused = simulate.is_some();

    // An explicit proactor: an error naming the cause, or io_uring.
    for _ in 0..2 {
        match EventLoop::builder().backend(Backend::Proactor).build() {
            Ok(lp) => {
                assert!(!refused, "{simulate:?} must refuse the proactor");
                assert_eq!(lp.backend(), Backend::Proactor);
                lp.close().unwrap();
            }
            Err(e) => {
                assert!(refused, "io_uring works on this kernel: {e}");
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                assert!(e.message().contains(cause), "{e}");
                assert!(
                    e.message().contains("Backend::Selector"),
                    "says what to do: {e}"
                );
            }
        }
    }
    match ProactorEventLoopPolicy::new().new_event_loop() {
        Ok(lp) => {
            assert!(!refused);
            lp.close().unwrap();
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported),
    }

    // Auto: the proactor, or the selector with one log line naming the cause.
    for _ in 0..3 {
        let built = EventLoop::new();
        match forced.as_deref() {
            Some("proactor") if refused => {
                let e = built.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                assert!(e.message().contains("AIOLOOP_BACKEND=proactor"), "{e}");
                assert!(e.message().contains(cause), "{e}");
            }
            Some("selector") => {
                let lp = built.unwrap();
                assert_eq!(lp.backend(), Backend::Selector);
                lp.close().unwrap();
            }
            _ => {
                let lp = built.unwrap();
                let want = if refused {
                    Backend::Selector
                } else {
                    Backend::Proactor
                };
                assert_eq!(lp.backend(), want);
                lp.close().unwrap();
            }
        }
    }
    let records = RECORDS.lock().unwrap().clone();
    let fallbacks: Vec<_> = records
        .iter()
        .filter(|r| r.contains("falls back") || r.contains("uses the selector"))
        .collect();
    if refused && forced.is_none() {
        assert_eq!(fallbacks.len(), 1, "said once: {records:?}");
        assert!(fallbacks[0].starts_with("WARN"), "{records:?}");
        assert!(fallbacks[0].contains(cause), "{records:?}");
    } else {
        assert!(fallbacks.is_empty(), "{records:?}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn auto_uses_io_uring_when_the_kernel_allows_it() {
    run_child(&[]);
}

#[cfg(target_os = "linux")]
#[test]
fn enosys_falls_back_to_the_selector() {
    run_child(&[(SIMULATE, "enosys")]);
}

#[cfg(target_os = "linux")]
#[test]
fn eperm_falls_back_to_the_selector() {
    run_child(&[(SIMULATE, "eperm")]);
}

#[cfg(target_os = "linux")]
#[test]
fn io_uring_disabled_falls_back_to_the_selector() {
    run_child(&[(SIMULATE, "disabled")]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_missing_opcode_falls_back_to_the_selector() {
    run_child(&[(SIMULATE, "noop-missing")]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_bad_simulation_value_is_a_refusal_that_says_what_to_use() {
    run_child(&[(SIMULATE, "maybe")]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_forced_proactor_that_is_refused_is_an_error_not_a_fallback() {
    run_child(&[(SIMULATE, "eperm"), ("AIOLOOP_BACKEND", "proactor")]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_forced_selector_never_probes_into_a_fallback_message() {
    run_child(&[(SIMULATE, "enosys"), ("AIOLOOP_BACKEND", "selector")]);
}

#[test]
fn a_bad_backend_variable_is_invalid_input() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child_bad_variable", "--nocapture"])
        .env(CHILD, "1")
        .env("AIOLOOP_BACKEND", "kqueue-please")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn child_bad_variable() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let e = EventLoop::new().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("selector"), "{e}");
    assert!(e.message().contains("proactor"), "{e}");
}
