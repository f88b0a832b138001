//! aioloop's wasm backend against wasm-bindgen-futures, measured in Node.
//!
//! Each workload is exported twice, once per runtime, with the same shape:
//! an `async` entry that JS awaits, returning a checksum that the runner
//! checks (so a runtime that skipped work would fail, not win).
//!
//! | workload | aioloop | peer (wasm-bindgen-futures) |
//! |---|---|---|
//! | spawn `n` | `create_task` × n, handles awaited in order | `spawn_local` × n, one `oneshot` per task awaited in order |
//! | yield `n` × `m` | `aioloop::yield_now()` | a future that wakes itself once (`wake_by_ref` + `Pending`) |
//! | timers `n` | `aioloop::sleep(d)` in n tasks | a `setTimeout` wrapped in a `Promise`, awaited through `JsFuture` |
//!
//! Both entries start from JS the same way: one Promise that settles when the
//! main task (which spawns and joins the others) finishes. The runner is
//! `run.mjs`; `scripts/bench-wasm.sh` builds and runs it.
#![cfg(target_arch = "wasm32")]
#![warn(missing_docs)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// The host's `setTimeout` (Node and browsers both have it on
    /// `globalThis`).
    #[wasm_bindgen(js_namespace = globalThis, js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: f64) -> JsValue;
}

thread_local! {
    /// The one aioloop loop of the benchmark (made on first use, reused by
    /// every round, as the peer reuses its one global queue).
    static LOOP: RefCell<Option<aioloop::EventLoop>> = const { RefCell::new(None) };
}

fn bench_loop() -> Result<aioloop::EventLoop, JsValue> {
    LOOP.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(lp) = slot.as_ref() {
            return Ok(lp.clone());
        }
        let lp = aioloop::EventLoop::new().map_err(|e| JsValue::from_str(&e.to_string()))?;
        *slot = Some(lp.clone());
        Ok(lp)
    })
}

/// Runs `main` as a task on the benchmark loop; the returned Promise settles
/// with its output (or rejects with the task's error).
fn on_aioloop<F>(main: F) -> Result<Promise, JsValue>
where
    F: Future<Output = f64> + 'static,
{
    let lp = bench_loop()?;
    if lp.is_closed() || lp.is_dead() {
        return Err(JsValue::from_str("the benchmark loop is closed"));
    }
    let mut start = Some(main);
    Ok(Promise::new(&mut |resolve, _reject| {
        let Some(main) = start.take() else { return };
        // The main task settles the promise itself: nothing awaits the handle.
        lp.create_task(async move {
            let out = main.await;
            let _ = resolve.call1(&JsValue::UNDEFINED, &JsValue::from_f64(out));
        })
        .detach();
    }))
}

fn sum_or_nan<E>(results: impl Iterator<Item = Result<u32, E>>) -> f64 {
    let mut sum = 0.0;
    for r in results {
        match r {
            Ok(v) => sum += f64::from(v),
            // NaN fails the runner's checksum comparison loudly.
            Err(_) => return f64::NAN,
        }
    }
    sum
}

/// aioloop: spawns `n` tasks (each returns its index), then awaits every
/// handle in order. Resolves with the sum of the indices.
#[wasm_bindgen(js_name = aioloopSpawn)]
pub fn aioloop_spawn(n: u32) -> Result<Promise, JsValue> {
    on_aioloop(async move {
        let lp = aioloop::get_running_loop().expect("inside a task");
        let tasks: Vec<_> = (0..n).map(|i| lp.create_task(async move { i })).collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        sum_or_nan(out.into_iter())
    })
}

/// aioloop: `batches` batches of `per` tasks (each returns its index): each
/// batch spawned, then its handles awaited in order (the native benchmark's
/// `spawn_many`). Resolves with the sum over all batches.
#[wasm_bindgen(js_name = aioloopSpawnBatches)]
pub fn aioloop_spawn_batches(batches: u32, per: u32) -> Result<Promise, JsValue> {
    on_aioloop(async move {
        let lp = aioloop::get_running_loop().expect("inside a task");
        let mut sum = 0.0;
        let mut tasks = Vec::with_capacity(per as usize);
        for _ in 0..batches {
            tasks.extend((0..per).map(|i| lp.create_task(async move { i })));
            for t in tasks.drain(..) {
                match t.await {
                    Ok(v) => sum += f64::from(v),
                    Err(_) => return f64::NAN,
                }
            }
        }
        sum
    })
}

/// aioloop: `n` tasks each yield `m` times. Resolves with the sum of the
/// indices of the tasks.
#[wasm_bindgen(js_name = aioloopYield)]
pub fn aioloop_yield(n: u32, m: u32) -> Result<Promise, JsValue> {
    on_aioloop(async move {
        let lp = aioloop::get_running_loop().expect("inside a task");
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                lp.create_task(async move {
                    for _ in 0..m {
                        aioloop::yield_now().await;
                    }
                    i
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        sum_or_nan(out.into_iter())
    })
}

/// aioloop: `n` tasks each sleep `1 + i % spread` ms. Resolves with the sum
/// of the indices.
#[wasm_bindgen(js_name = aioloopTimers)]
pub fn aioloop_timers(n: u32, spread: u32) -> Result<Promise, JsValue> {
    let spread = spread.max(1);
    on_aioloop(async move {
        let lp = aioloop::get_running_loop().expect("inside a task");
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let ms = u64::from(1 + i % spread);
                lp.create_task(async move {
                    aioloop::sleep(Duration::from_millis(ms)).await;
                    i
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        sum_or_nan(out.into_iter())
    })
}

/// The benchmark loop's figures as a JS object (`turns`, `callbacks`,
/// `timersFired`, `budgetYields`), to show in the report.
#[wasm_bindgen(js_name = aioloopStats)]
pub fn aioloop_stats() -> Result<JsValue, JsValue> {
    let s = bench_loop()?.stats();
    let o = js_sys::Object::new();
    for (k, v) in [
        ("turns", s.turns),
        ("callbacks", s.callbacks),
        ("timersFired", s.timers_fired),
        ("budgetYields", s.budget_yields),
    ] {
        // Counts stay far below 2^53: exact as JS numbers.
        js_sys::Reflect::set(&o, &k.into(), &JsValue::from_f64(v as f64))?;
    }
    Ok(o.into())
}

/// Runs `main` with `spawn_local`, the peer's way in: the returned Promise
/// settles with its output.
fn on_peer<F>(main: F) -> Promise
where
    F: Future<Output = f64> + 'static,
{
    wasm_bindgen_futures::future_to_promise(async move { Ok(JsValue::from_f64(main.await)) })
}

/// Spawns `fut` with `spawn_local` and returns the receiving end of its
/// result (wasm-bindgen-futures has no join handle: a oneshot is the usual
/// way to get one).
fn peer_spawn<F>(fut: F) -> oneshot::Receiver<u32>
where
    F: Future<Output = u32> + 'static,
{
    let (tx, rx) = oneshot::channel();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = tx.send(fut.await);
    });
    rx
}

async fn peer_join(handles: Vec<oneshot::Receiver<u32>>) -> f64 {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    sum_or_nan(out.into_iter())
}

/// Peer: spawns `n` tasks with `spawn_local`, awaits their oneshots in order.
#[wasm_bindgen(js_name = peerSpawn)]
pub fn peer_spawn_bench(n: u32) -> Promise {
    on_peer(async move {
        let handles: Vec<_> = (0..n).map(|i| peer_spawn(async move { i })).collect();
        peer_join(handles).await
    })
}

/// Peer: `batches` batches of `per` tasks, each batch spawned with
/// `spawn_local`, then its oneshots awaited in order.
#[wasm_bindgen(js_name = peerSpawnBatches)]
pub fn peer_spawn_batches(batches: u32, per: u32) -> Promise {
    on_peer(async move {
        let mut sum = 0.0;
        let mut handles = Vec::with_capacity(per as usize);
        for _ in 0..batches {
            handles.extend((0..per).map(|i| peer_spawn(async move { i })));
            for h in handles.drain(..) {
                match h.await {
                    Ok(v) => sum += f64::from(v),
                    Err(_) => return f64::NAN,
                }
            }
        }
        sum
    })
}

/// A future that is pending once and wakes itself (the usual `yield_now`
/// where the executor has none).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Peer: `n` tasks each yield `m` times.
#[wasm_bindgen(js_name = peerYield)]
pub fn peer_yield_bench(n: u32, m: u32) -> Promise {
    on_peer(async move {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                peer_spawn(async move {
                    for _ in 0..m {
                        YieldOnce(false).await;
                    }
                    i
                })
            })
            .collect();
        peer_join(handles).await
    })
}

/// A Promise-based sleep: `setTimeout(resolve, ms)` wrapped in a Promise and
/// awaited through `JsFuture`.
async fn peer_sleep(ms: u32) {
    let p = Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, f64::from(ms));
    });
    let _ = JsFuture::from(p).await;
}

/// Peer: `n` tasks each sleep `1 + i % spread` ms with a Promise-based timer.
#[wasm_bindgen(js_name = peerTimers)]
pub fn peer_timers_bench(n: u32, spread: u32) -> Promise {
    let spread = spread.max(1);
    on_peer(async move {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                peer_spawn(async move {
                    peer_sleep(1 + i % spread).await;
                    i
                })
            })
            .collect();
        peer_join(handles).await
    })
}
