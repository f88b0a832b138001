//! A narrated tour of aioloop: `cargo run --release --example tour`.
//!
//! Every line it prints is computed from what the runtime just did; the
//! `assert!`s guard what holds on every machine (timings are only printed).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use aioloop::{enter_host_context, ContextPolicy, DefaultEventLoopPolicy, Error, ErrorKind};
use aioloop::{EventLoop, EventLoopPolicy, HostContext};

/// A duration in milliseconds, for humans.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn is_default_policy() -> bool {
    let policy = aioloop::get_event_loop_policy();
    policy.downcast_ref::<DefaultEventLoopPolicy>().is_some()
}

/// (a) The process-wide policy and the module-level helpers. Returns a loop
/// made current for the main thread.
fn policies() -> Result<EventLoop, Error> {
    let get = aioloop::get_event_loop_policy;
    let (default, same) = (is_default_policy(), Arc::ptr_eq(&get(), &get()));
    println!("DefaultEventLoopPolicy: {default}; same instance on each call: {same}");
    let err = aioloop::get_event_loop().unwrap_err();
    let kind = err.kind();
    assert_eq!(kind, ErrorKind::NoCurrentLoop);
    println!("get_event_loop() with no loop set -> {kind:?}:\n   {err}");
    let lp = aioloop::new_event_loop()?;
    let (backend, current) = (lp.backend(), aioloop::get_event_loop().is_ok());
    println!("new_event_loop() -> a {backend} loop; made current by that? {current}");
    aioloop::set_event_loop(Some(lp.clone()))?;
    let now_current = aioloop::get_event_loop()? == lp;
    println!("after set_event_loop(Some(lp)): get_event_loop() == lp: {now_current}");
    Ok(lp)
}

/// (b) What a fresh thread sees, then its own loop, through the same policy.
fn worker() -> Result<String, Error> {
    let err = aioloop::get_event_loop().unwrap_err().to_string(); // main's loop is not here
    let own = aioloop::new_event_loop()?;
    aioloop::set_event_loop(Some(own.clone()))?;
    let is_own = aioloop::get_event_loop()? == own;
    own.run_until_complete(own.sleep(Duration::from_millis(50)))?;
    aioloop::set_event_loop(None)?;
    own.close()?;
    let before = err.split(':').next().unwrap_or_default();
    let report = format!("\"{before}\"; own loop current: {is_own}; slept 50 ms");
    Ok(report)
}

/// (c) A custom policy: loops keyed by the host's "tab" id instead of the
/// thread, counting the loops it makes. Wrapping a policy and delegating is
/// the Rust form of subclassing one.
struct TabPolicy {
    base: ContextPolicy<HostContext>,
    created: AtomicUsize,
}

impl EventLoopPolicy for TabPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        self.base.get_event_loop()
    }
    fn set_event_loop(&self, lp: Option<EventLoop>) -> Result<(), Error> {
        self.base.set_event_loop(lp)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.base.new_event_loop()
    }
}

fn host_tabs() -> Result<(), Error> {
    let base = ContextPolicy::new(HostContext);
    let created = AtomicUsize::new(0);
    let tabs = Arc::new(TabPolicy { base, created });
    aioloop::set_event_loop_policy(Some(tabs.clone()));
    let err = aioloop::get_event_loop().unwrap_err();
    let kind = err.kind();
    println!("installed TabPolicy; outside any tab -> {kind:?}:\n   {err}");
    let mut loops = Vec::new();
    for tab in 1..=3u64 {
        let _tab = enter_host_context(tab); // the host says "we are in tab N now"
        loops.push(aioloop::new_event_loop()?);
        aioloop::set_event_loop(loops.last().cloned())?;
    }
    let distinct = (0..3).all(|i| (i + 1..3).all(|j| loops[i] != loops[j]));
    let made = tabs.created.load(Ordering::Relaxed);
    assert!(distinct && made == 3);
    println!("each tab set its own loop: the policy made {made}; all distinct: {distinct}");
    for (tab, tab_loop) in (1..=3u64).zip(&loops) {
        let _tab = enter_host_context(tab);
        let here = aioloop::get_event_loop()?;
        let running = here.run_until_complete(async { aioloop::get_running_loop() })??;
        let (mine, ran) = (here == *tab_loop, running == here);
        println!("tab {tab}: get_event_loop() is this tab's loop: {mine}; it ran: {ran}");
    }
    loops[1].close()?;
    let _tab = enter_host_context(1);
    let alive = aioloop::get_event_loop()?.run_until_complete(async { "still runs" })?;
    let closed = loops[1].is_closed();
    println!("closed tab 2's loop (is_closed: {closed}); tab 1's loop {alive}");
    loops.iter().try_for_each(EventLoop::close)?;
    aioloop::set_event_loop_policy(None);
    let restored = is_default_policy();
    println!("set_event_loop_policy(None) restored the default policy: {restored}");
    Ok(())
}

/// (d) call_soon FIFO, timers, tasks, cancel, timeout.
fn timers_and_tasks(lp: &EventLoop) -> Result<(), Error> {
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..5 {
        let log = log.clone();
        lp.call_soon(move || log.borrow_mut().push(i))?;
    }
    lp.run_until_complete(aioloop::yield_now())?;
    println!("call_soon x5 ran FIFO: {:?}", log.take());

    let fired = Rc::new(RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    for (i, delay) in [30, 10, 20, 10, 5].into_iter().enumerate() {
        let (fired, l2) = (fired.clone(), lp.clone());
        let when = lp.time() + Duration::from_millis(delay);
        handles.push(lp.call_at(when, move || {
            let late = (l2.time() - when).as_micros(); // never negative: never early
            let entry = (i, format!("#{i} {delay}ms (+{late} us)"));
            fired.borrow_mut().push(entry);
        })?);
    }
    handles[4].cancel();
    lp.run_until_complete(lp.sleep(Duration::from_millis(40)))?;
    let (order, text): (Vec<_>, Vec<_>) = fired.take().into_iter().unzip();
    assert_eq!(order, [1, 3, 2, 0]);
    println!("timers #0..#4 (#4 cancelled) fired by deadline, ties in scheduling order:");
    println!("   {}", text.join(" -> "));

    let t0 = Instant::now();
    let sleepy = |d: u64| {
        let log = log.clone();
        lp.create_task(async move {
            aioloop::sleep(Duration::from_millis(d)).await;
            log.borrow_mut().push(d);
            d
        })
    };
    let tasks = [sleepy(30), sleepy(10), sleepy(20)];
    // asyncio.gather(): the tasks run concurrently; results come in argument order.
    let results = lp.run_until_complete(futures::future::try_join_all(tasks))??;
    let (ended, took) = (log.take(), ms(t0.elapsed()));
    println!("tasks sleeping 30/10/20 ms ended as {ended:?}, gathered {results:?} in {took}");

    let sleeper = lp.create_task(aioloop::sleep(Duration::from_secs(3600)));
    lp.run_until_complete(aioloop::yield_now())?; // it starts sleeping
    let asked = sleeper.cancel();
    let err = lp.run_until_complete(sleeper)?.unwrap_err();
    let kind = err.kind();
    println!("cancel() a 1-hour sleeper (accepted: {asked}) -> {kind:?}: {err}");
    let slow = aioloop::timeout(Duration::from_millis(5), std::future::pending::<()>());
    let err = lp.run_until_complete(slow)?.unwrap_err();
    println!("timeout(5 ms, pending()) -> {:?}: {err}", err.kind());
    Ok(())
}

/// (e) Another thread wakes the loop while it blocks in the backend.
fn wake_up(lp: &EventLoop) -> Result<(), Error> {
    let (ts, (tx, rx)) = (lp.threadsafe(), mpsc::channel());
    let waker = thread::spawn(move || {
        for i in 0..5 {
            thread::sleep(Duration::from_millis(10)); // the loop has nothing to do meanwhile
            let (sent, tx) = (Instant::now(), tx.clone());
            let wake = move || {
                tx.send(sent.elapsed()).expect("main thread listens");
                if i == 4 {
                    aioloop::get_running_loop().expect("on the loop").stop();
                }
            };
            ts.call_soon_threadsafe(wake).expect("loop is open");
        }
    });
    let (idle, backend) = (lp.pending_tasks(), lp.backend());
    println!("run_forever() with {idle} pending tasks: it waits in the {backend} backend");
    lp.run_forever()?;
    waker.join().expect("waker thread");
    let mut lat: Vec<Duration> = rx.try_iter().collect();
    lat.sort();
    let (min, med, max) = (ms(lat[0]), ms(lat[2]), ms(lat[4]));
    println!("5 call_soon_threadsafe wake-ups, send -> run: min {min}, median {med}, max {max}");
    Ok(())
}

/// (f) Blocking work on the default executor while the loop keeps ticking.
fn executor(lp: &EventLoop) -> Result<(), Error> {
    let job = || {
        thread::sleep(Duration::from_millis(40)); // blocking: would freeze the loop
        thread::current().name().unwrap_or("?").to_string()
    };
    let ticks = Rc::new(Cell::new(0));
    let t2 = ticks.clone();
    let ticker = lp.create_task(async move {
        loop {
            aioloop::sleep(Duration::from_millis(5)).await;
            t2.set(t2.get() + 1);
        }
    });
    let t0 = Instant::now();
    let jobs: Vec<_> = (0..3).map(|_| lp.run_in_executor(job)).collect();
    let names = lp.run_until_complete(futures::future::try_join_all(jobs))??;
    let (took, ticked) = (ms(t0.elapsed()), ticks.get());
    println!("3 blocking 40 ms jobs ran on {names:?} in {took}");
    println!("meanwhile the loop stayed responsive: a 5 ms ticker ran {ticked} times");
    ticker.cancel();
    lp.run_until_complete(lp.shutdown_default_executor())??;
    Ok(())
}

/// (g) Panics in callbacks and tasks are contained.
fn panics(lp: &EventLoop) -> Result<(), Error> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(move |_lp, ctx| s.borrow_mut().push(ctx.to_string()));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // keep the tour's output tidy
    lp.call_soon(|| panic!("boom in a callback"))?;
    let detached = lp.create_task(async { panic!("boom in a detached task") });
    detached.detach(); // nobody will look at its result
    let awaited = lp.create_task(async { panic!("boom in an awaited task") });
    let err = lp.run_until_complete(awaited)?.unwrap_err();
    let after = lp.run_until_complete(async { "and the loop still runs" })?;
    std::panic::set_hook(hook);
    for report in seen.borrow().iter() {
        let report = report.split(" (scheduled at").next().unwrap_or_default();
        println!("handler got: {report}");
    }
    println!("awaited task -> {:?}: {err} ({after})", err.kind());
    assert_eq!(seen.borrow().len(), 2);
    Ok(())
}

fn main() -> Result<(), Error> {
    let started = Instant::now();
    println!("== a. policies (Python 3.14 semantics) ==");
    let lp = policies()?;

    println!("\n== b. one current loop per thread, through the same policy ==");
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for i in 1..=2 {
        let builder = thread::Builder::new().name(format!("worker-{i}"));
        workers.push(builder.spawn(worker).expect("spawn a thread"));
    }
    for (i, w) in (1..).zip(workers) {
        println!("worker-{i} saw {}", w.join().expect("a worker panicked")?);
    }
    let took = t0.elapsed();
    let (parallel, took) = (took.as_millis() < 100, ms(took));
    let untouched = aioloop::get_event_loop()? == lp;
    println!("two 50 ms sleeps on two threads' loops took {took}; in parallel: {parallel}");
    println!("main thread's loop untouched: get_event_loop() == lp: {untouched}");
    aioloop::set_event_loop(None)?;

    println!("\n== c. a custom policy keyed by host context (three \"tabs\") ==");
    host_tabs()?;
    println!("\n== d. callbacks, timers and tasks ==");
    timers_and_tasks(&lp)?;
    println!("\n== e. thread-safe wake-up of a sleeping loop ==");
    wake_up(&lp)?;
    println!("\n== f. run_in_executor: blocking work off the loop ==");
    executor(&lp)?;
    println!("\n== g. panics go to the exception handler; the loop keeps running ==");
    panics(&lp)?;

    lp.close()?;
    let (closed, total) = (lp.is_closed(), ms(started.elapsed()));
    println!("\ntour complete: 7 sections, main loop closed: {closed}, in {total}");
    Ok(())
}
