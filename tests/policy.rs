//! Event loop policies: CPython 3.14's `PolicyTests`
//! (Lib/test/test_asyncio/test_events.py), ported where they apply, plus
//! custom policies built by wrapping `DefaultEventLoopPolicy`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aioloop::{
    Backend, ContextPolicy, DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, EventLoopPolicy,
    HostContext, SelectorEventLoopPolicy,
};

mod util;

use util::{global_policy, CountingPolicy};

// ---------------------------------------------------------------------------
// DefaultEventLoopPolicy, used directly

#[test]
fn get_event_loop_on_fresh_policy_errors_and_creates_nothing() {
    let policy = DefaultEventLoopPolicy::new();
    let err = policy.get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
    // The failed call neither created nor set a loop: asking again still fails.
    let err = policy.get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
}

#[test]
fn get_event_loop_after_set_none_errors() {
    let policy = DefaultEventLoopPolicy::new();
    policy.set_event_loop(None).unwrap();
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );

    // Clearing a loop that was set.
    let lp = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    lp.close().unwrap();
}

#[test]
fn get_event_loop_in_another_thread_errors() {
    let policy = Arc::new(DefaultEventLoopPolicy::new());
    let lp = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(lp.clone())).unwrap();

    let p2 = policy.clone();
    let kind = std::thread::spawn(move || p2.get_event_loop().map(|_| ()).unwrap_err().kind())
        .join()
        .unwrap();
    assert_eq!(kind, ErrorKind::NoCurrentLoop);

    // This thread's slot is untouched by the other thread's lookup.
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn set_event_loop_in_another_thread_is_not_seen_here() {
    let policy = Arc::new(DefaultEventLoopPolicy::new());
    let p2 = policy.clone();
    std::thread::spawn(move || {
        let lp = p2.new_event_loop().unwrap();
        p2.set_event_loop(Some(lp.clone())).unwrap();
        assert_eq!(p2.get_event_loop().unwrap(), lp);
        p2.set_event_loop(None).unwrap();
        lp.close().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
}

#[test]
fn new_event_loop_is_not_made_current() {
    let policy = DefaultEventLoopPolicy::new();
    let lp = policy.new_event_loop().unwrap();
    assert!(!lp.is_running());
    assert!(!lp.is_closed());
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    lp.close().unwrap();
}

#[test]
fn new_event_loop_returns_a_fresh_loop_each_time() {
    let policy = DefaultEventLoopPolicy::new();
    let a = policy.new_event_loop().unwrap();
    let b = policy.new_event_loop().unwrap();
    assert_ne!(a, b);
    a.close().unwrap();
    // Closing one does not close the other.
    assert!(!b.is_closed());
    b.close().unwrap();
}

#[test]
fn set_event_loop_then_get_returns_the_same_loop() {
    let policy = DefaultEventLoopPolicy::new();
    let old_loop = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(old_loop.clone())).unwrap();
    assert_eq!(policy.get_event_loop().unwrap(), old_loop);

    let lp = policy.new_event_loop().unwrap();
    assert_ne!(lp, old_loop);
    policy.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    assert_ne!(policy.get_event_loop().unwrap(), old_loop);

    policy.set_event_loop(None).unwrap();
    old_loop.close().unwrap();
    lp.close().unwrap();
}

#[test]
fn a_closed_current_loop_is_still_returned() {
    // asyncio returns whatever was set, closed or not.
    let policy = DefaultEventLoopPolicy::new();
    let lp = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(lp.clone())).unwrap();
    lp.close().unwrap();
    let got = policy.get_event_loop().unwrap();
    assert_eq!(got, lp);
    assert!(got.is_closed());
    policy.set_event_loop(None).unwrap();
}

#[test]
fn each_default_policy_instance_has_its_own_slots() {
    let p1 = DefaultEventLoopPolicy::new();
    let p2 = DefaultEventLoopPolicy::new();
    let lp = p1.new_event_loop().unwrap();
    p1.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(p1.get_event_loop().unwrap(), lp);
    assert_eq!(
        p2.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );

    let lp2 = p2.new_event_loop().unwrap();
    p2.set_event_loop(Some(lp2.clone())).unwrap();
    assert_eq!(p2.get_event_loop().unwrap(), lp2);
    assert_eq!(p1.get_event_loop().unwrap(), lp);

    // Clearing one leaves the other alone.
    p1.set_event_loop(None).unwrap();
    assert!(p1.get_event_loop().is_err());
    assert_eq!(p2.get_event_loop().unwrap(), lp2);

    p2.set_event_loop(None).unwrap();
    lp.close().unwrap();
    lp2.close().unwrap();
}

#[test]
fn selector_policy_makes_selector_loops() {
    let policy = SelectorEventLoopPolicy::new();
    let lp = policy.new_event_loop().unwrap();
    assert_eq!(lp.backend(), Backend::Selector);
    // Same per-thread semantics as the default policy.
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    policy.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn default_policy_makes_loops_on_the_default_backend() {
    // Which backend `Auto` is depends on the platform and on AIOLOOP_BACKEND
    // (tests/backend.rs checks the choice itself): the policy follows it.
    let lp = DefaultEventLoopPolicy::new().new_event_loop().unwrap();
    let plain = aioloop::EventLoop::new().unwrap();
    assert_eq!(lp.backend(), plain.backend());
    assert_ne!(lp.backend(), Backend::Auto);
    lp.close().unwrap();
    plain.close().unwrap();
}

#[cfg(windows)]
#[test]
fn windows_policies_make_their_backends() {
    use aioloop::{WindowsProactorEventLoopPolicy, WindowsSelectorEventLoopPolicy};
    let lp = WindowsSelectorEventLoopPolicy::new()
        .new_event_loop()
        .unwrap();
    assert_eq!(lp.backend(), Backend::Selector);
    lp.close().unwrap();
    let policy = WindowsProactorEventLoopPolicy::new();
    let lp = policy.new_event_loop().unwrap();
    assert_eq!(lp.backend(), Backend::Proactor);
    // Same per-thread semantics as the default policy.
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    policy.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[cfg(windows)]
#[test]
fn default_policy_makes_proactor_loops_on_windows_unless_told_otherwise() {
    let expected = match std::env::var("AIOLOOP_BACKEND").as_deref() {
        Ok("selector") => Backend::Selector,
        _ => Backend::Proactor,
    };
    let lp = DefaultEventLoopPolicy::new().new_event_loop().unwrap();
    assert_eq!(lp.backend(), expected);
    lp.close().unwrap();
}

// Linux has io_uring (tests/backend.rs covers its refusals), Windows IOCP.
#[cfg(not(any(windows, target_os = "linux")))]
#[test]
fn the_proactor_is_unsupported_elsewhere_and_says_so() {
    let err = EventLoop::builder()
        .backend(Backend::Proactor)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err:?}");
    assert!(err.message().contains("Backend::Selector"), "{err}");
}

/// Prints the backend that loops made without naming one use (the test
/// scripts run this with `--nocapture` to report which backend a whole run
/// used: `AIOLOOP_BACKEND` or the platform's default).
#[test]
fn backend_in_use() {
    let lp = EventLoop::new().unwrap();
    println!("aioloop backend in use: {}", lp.backend());
    assert_ne!(lp.backend(), Backend::Auto);
    lp.close().unwrap();
}

#[test]
fn loops_from_the_policy_run() {
    let policy = DefaultEventLoopPolicy::new();
    let lp = policy.new_event_loop().unwrap();
    let t = lp.create_task(async { 6 * 7 });
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), 42);
    lp.close().unwrap();
}

#[test]
fn no_current_loop_message_names_the_thread_and_says_what_to_do() {
    let msg = std::thread::Builder::new()
        .name("policy-msg-worker".into())
        .spawn(|| {
            DefaultEventLoopPolicy::new()
                .get_event_loop()
                .map(|_| ())
                .unwrap_err()
                .to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(msg.contains("no current event loop"), "{msg}");
    assert!(msg.contains("policy-msg-worker"), "{msg}");
    assert!(msg.contains("set_event_loop"), "{msg}");
    assert!(msg.contains("aioloop::run"), "{msg}");
}

#[test]
fn no_current_loop_message_names_an_unnamed_thread_by_id() {
    let (id, msg) = std::thread::spawn(|| {
        let err = DefaultEventLoopPolicy::new()
            .get_event_loop()
            .map(|_| ())
            .unwrap_err();
        (std::thread::current().id(), err.message().to_string())
    })
    .join()
    .unwrap();
    assert!(msg.contains(&format!("{id:?}")), "{msg}");
}

// ---------------------------------------------------------------------------
// The process-wide policy

#[test]
fn get_event_loop_policy_is_a_default_policy_and_stable() {
    let _g = global_policy();
    let policy = aioloop::get_event_loop_policy();
    assert!(policy.downcast_ref::<DefaultEventLoopPolicy>().is_some());
    assert!(policy.downcast_ref::<SelectorEventLoopPolicy>().is_none());
    let again = aioloop::get_event_loop_policy();
    assert!(Arc::ptr_eq(&policy, &again));
}

#[test]
fn get_event_loop_policy_is_the_same_instance_from_every_thread() {
    let _g = global_policy();
    let here = aioloop::get_event_loop_policy();
    let there = std::thread::spawn(aioloop::get_event_loop_policy)
        .join()
        .unwrap();
    assert!(Arc::ptr_eq(&here, &there));
}

#[test]
fn set_event_loop_policy_then_get_returns_it() {
    let _g = global_policy();
    let old_policy = aioloop::get_event_loop_policy();
    let policy: Arc<dyn EventLoopPolicy> = Arc::new(DefaultEventLoopPolicy::new());
    aioloop::set_event_loop_policy(Some(policy.clone()));
    let got = aioloop::get_event_loop_policy();
    assert!(Arc::ptr_eq(&got, &policy));
    assert!(!Arc::ptr_eq(&got, &old_policy));
}

#[test]
fn set_event_loop_policy_none_restores_a_fresh_default() {
    let _g = global_policy();
    let original = aioloop::get_event_loop_policy();
    let lp = aioloop::new_event_loop().unwrap();
    aioloop::set_event_loop(Some(lp.clone())).unwrap();

    aioloop::set_event_loop_policy(Some(Arc::new(ContextPolicy::new(HostContext))));
    let custom = aioloop::get_event_loop_policy();
    assert!(custom.downcast_ref::<DefaultEventLoopPolicy>().is_none());
    assert!(custom
        .downcast_ref::<ContextPolicy<HostContext>>()
        .is_some());

    aioloop::set_event_loop_policy(None);
    let restored = aioloop::get_event_loop_policy();
    assert!(restored.downcast_ref::<DefaultEventLoopPolicy>().is_some());
    assert!(!Arc::ptr_eq(&restored, &original));
    assert!(!Arc::ptr_eq(&restored, &custom));
    // A fresh default: the loop set under the old one is not current.
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    // The old policy object still has it.
    assert_eq!(original.get_event_loop().unwrap(), lp);
    original.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn module_level_helpers_go_through_the_installed_policy() {
    let _g = global_policy();
    let policy = Arc::new(DefaultEventLoopPolicy::new());
    aioloop::set_event_loop_policy(Some(policy.clone()));

    let lp = aioloop::new_event_loop().unwrap();
    assert!(policy.get_event_loop().is_err());
    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    // Visible through the policy object itself...
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    // ...and through the module-level function.
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);

    policy.set_event_loop(None).unwrap();
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    lp.close().unwrap();
}

#[test]
fn the_global_policy_keeps_one_loop_per_thread() {
    let _g = global_policy();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                assert!(aioloop::get_event_loop().is_err());
                let lp = aioloop::new_event_loop().unwrap();
                aioloop::set_event_loop(Some(lp.clone())).unwrap();
                for _ in 0..100 {
                    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
                    std::thread::yield_now();
                }
                aioloop::set_event_loop(None).unwrap();
                lp.close().unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // None of the workers' loops leaked into this thread.
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
}

// ---------------------------------------------------------------------------
// Custom policies: wrap DefaultEventLoopPolicy, override some methods
// (`CountingPolicy`, shared with other tests, is in `util`)

#[test]
fn custom_counting_policy_installed_process_wide() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let installed = aioloop::get_event_loop_policy();
    assert!(installed.downcast_ref::<CountingPolicy>().is_some());
    assert!(installed.downcast_ref::<DefaultEventLoopPolicy>().is_none());

    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    assert_eq!(policy.gets(), 1);

    let lp = aioloop::new_event_loop().unwrap();
    assert_eq!(policy.news(), 1);
    assert_eq!(policy.sets().len(), 0);

    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(policy.sets().len(), 1);
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    assert_eq!(policy.gets(), 2);

    aioloop::set_event_loop(None).unwrap();
    assert_eq!(policy.sets().len(), 2);
    assert!(aioloop::get_event_loop().is_err());
    assert_eq!(policy.gets(), 3);
    assert_eq!(policy.news(), 1);
    lp.close().unwrap();
}

/// The pre-3.14 behaviour, as a user-written policy: `get_event_loop`
/// creates and sets a loop on demand; everything else is the default's.
#[derive(Default)]
struct AutoCreatePolicy {
    base: DefaultEventLoopPolicy,
    created: AtomicUsize,
}

impl EventLoopPolicy for AutoCreatePolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        match self.base.get_event_loop() {
            Err(e) if e.kind() == ErrorKind::NoCurrentLoop => {
                let lp = self.base.new_event_loop()?;
                self.base.set_event_loop(Some(lp.clone()))?;
                self.created.fetch_add(1, Ordering::SeqCst);
                Ok(lp)
            }
            other => other,
        }
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
        self.base.set_event_loop(event_loop)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.base.new_event_loop()
    }
}

#[test]
fn custom_auto_creating_policy_via_module_level_functions() {
    let _g = global_policy();
    let policy = Arc::new(AutoCreatePolicy::default());
    aioloop::set_event_loop_policy(Some(policy.clone()));

    let lp = aioloop::get_event_loop().unwrap();
    assert_eq!(policy.created.load(Ordering::SeqCst), 1);
    // Created once per thread, then the same loop.
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    assert_eq!(policy.created.load(Ordering::SeqCst), 1);

    // The delegated methods behave as the default's.
    let other = aioloop::new_event_loop().unwrap();
    assert_ne!(other, lp);
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    aioloop::set_event_loop(Some(other.clone())).unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), other);

    // Another thread gets its own loop.
    std::thread::spawn(|| {
        let lp = aioloop::get_event_loop().unwrap();
        assert_eq!(aioloop::get_event_loop().unwrap(), lp);
        aioloop::set_event_loop(None).unwrap();
        lp.close().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(policy.created.load(Ordering::SeqCst), 2);

    // Clearing makes the next call create again.
    aioloop::set_event_loop(None).unwrap();
    let third = aioloop::get_event_loop().unwrap();
    assert_ne!(third, lp);
    assert_ne!(third, other);
    assert_eq!(policy.created.load(Ordering::SeqCst), 3);

    aioloop::set_event_loop(None).unwrap();
    lp.close().unwrap();
    other.close().unwrap();
    third.close().unwrap();
}

#[test]
fn custom_policy_loops_are_used_by_run() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let v = aioloop::run(async { 5 }).unwrap();
    assert_eq!(v, 5);
    assert_eq!(policy.news(), 1);
}
