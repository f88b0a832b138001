//! Contexts: what "here" means for a policy. `ThreadContext`, `TaskContext`,
//! `HostContext`, a user-written `Context`, and `ContextPolicy` over each.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use aioloop::{
    enter_host_context, Backend, Context, ContextPolicy, Error, ErrorKind, EventLoop,
    EventLoopPolicy, HostContext, HostId, TaskContext, TaskContextId, ThreadContext,
};

mod util;

use util::global_policy;

// ---------------------------------------------------------------------------
// ThreadContext

#[test]
fn thread_context_id_is_the_thread_id_and_differs_per_thread() {
    let here = ThreadContext.current_id().unwrap();
    assert_eq!(here, std::thread::current().id());
    assert_eq!(ThreadContext.current_id().unwrap(), here);
    let there = std::thread::spawn(|| ThreadContext.current_id().unwrap())
        .join()
        .unwrap();
    assert_ne!(here, there);
}

#[test]
fn thread_context_describes_a_named_thread_by_name() {
    let text = std::thread::Builder::new()
        .name("ctx-describe".into())
        .spawn(|| {
            let id = ThreadContext.current_id().unwrap();
            ThreadContext.describe(&id)
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(text.contains("ctx-describe"), "{text}");
}

#[test]
fn thread_context_policy_keeps_a_loop_per_thread() {
    let policy = Arc::new(ContextPolicy::new(ThreadContext));
    let lp = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(lp.clone())).unwrap();
    let p = policy.clone();
    let kind = std::thread::spawn(move || p.get_event_loop().map(|_| ()).unwrap_err().kind())
        .join()
        .unwrap();
    assert_eq!(kind, ErrorKind::NoCurrentLoop);
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

// ---------------------------------------------------------------------------
// TaskContext

#[test]
fn task_context_ids_are_fresh_and_the_root_is_stable() {
    let a = TaskContextId::new();
    let b = TaskContextId::new();
    assert_ne!(a, b);
    let root = TaskContextId::current();
    assert_eq!(TaskContextId::current(), root);
    assert_ne!(root, a);
    assert_ne!(root, b);
    assert_eq!(TaskContext.current_id().unwrap(), root);
    // Another thread has another root.
    let other_root = std::thread::spawn(TaskContextId::current).join().unwrap();
    assert_ne!(other_root, root);
}

#[test]
fn task_created_outside_tasks_runs_in_the_threads_root_context() {
    let lp = EventLoop::new().unwrap();
    let root = TaskContextId::current();
    let t = lp.create_task(async { TaskContextId::current() });
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), root);
    // run_until_complete's own future too.
    let main = lp
        .run_until_complete(async { TaskContextId::current() })
        .unwrap();
    assert_eq!(main, root);
    lp.close().unwrap();
}

#[test]
fn task_created_inside_a_task_inherits_the_creators_context() {
    let lp = EventLoop::new().unwrap();
    let ctx = TaskContextId::new();
    let t = lp.create_task_in_context(ctx, async {
        let parent = TaskContextId::current();
        let lp = aioloop::get_running_loop().unwrap();
        let child = lp
            .create_task(async {
                aioloop::yield_now().await;
                let me = TaskContextId::current();
                let lp = aioloop::get_running_loop().unwrap();
                let grandchild = lp
                    .create_task(async { TaskContextId::current() })
                    .await
                    .unwrap();
                (me, grandchild)
            })
            .await
            .unwrap();
        (parent, child)
    });
    let (parent, (child, grandchild)) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(parent, ctx);
    assert_eq!(child, ctx);
    assert_eq!(grandchild, ctx);
    lp.close().unwrap();
}

#[test]
fn create_task_in_context_gives_a_fresh_context() {
    let lp = EventLoop::new().unwrap();
    let root = TaskContextId::current();
    let fresh = TaskContextId::new();
    let t = lp.create_task_in_context(fresh, async { TaskContextId::current() });
    let seen = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(seen, fresh);
    assert_ne!(seen, root);
    // Leaving the task restored the caller's context.
    assert_eq!(TaskContextId::current(), root);

    // From inside a task, a fresh context is not the creator's.
    let outer = TaskContextId::new();
    let t = lp.create_task_in_context(outer, async {
        let inner = TaskContextId::new();
        let lp = aioloop::get_running_loop().unwrap();
        let got = lp
            .create_task_in_context(inner, async { TaskContextId::current() })
            .await
            .unwrap();
        (inner, got, TaskContextId::current())
    });
    let (inner, got, after) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(got, inner);
    assert_ne!(got, outer);
    assert_eq!(after, outer);
    lp.close().unwrap();
}

#[test]
fn interleaved_tasks_each_keep_their_context_across_awaits() {
    let lp = EventLoop::new().unwrap();
    let ids: Vec<TaskContextId> = (0..3).map(|_| TaskContextId::new()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|&ctx| {
            lp.create_task_in_context(ctx, async move {
                for _ in 0..5 {
                    assert_eq!(TaskContextId::current(), ctx);
                    aioloop::yield_now().await;
                }
                TaskContextId::current()
            })
        })
        .collect();
    let out = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(out, ids);
    lp.close().unwrap();
}

/// asyncio's `call_soon(cb)` runs `cb` in a copy of the caller's context.
#[test]
fn callback_runs_in_the_context_it_was_scheduled_from() {
    let lp = EventLoop::new().unwrap();
    let ctx = TaskContextId::new();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let t = lp.create_task_in_context(ctx, async move {
        let lp = aioloop::get_running_loop().unwrap();
        lp.call_soon(move || s.set(Some(TaskContextId::current())))
            .unwrap();
        aioloop::yield_now().await;
        aioloop::yield_now().await;
    });
    lp.run_until_complete(t).unwrap().unwrap();
    lp.close().unwrap();
    assert_eq!(seen.get(), Some(ctx));
}

#[test]
fn task_context_policy_sees_a_loop_per_task_context() {
    let lp = EventLoop::new().unwrap();
    let policy = Rc::new(ContextPolicy::new(TaskContext));
    let la = policy.new_event_loop().unwrap();
    let lb = policy.new_event_loop().unwrap();
    assert_ne!(la, lb);

    let (p, l) = (policy.clone(), la.clone());
    let a = lp.create_task_in_context(TaskContextId::new(), async move {
        assert_eq!(
            p.get_event_loop().unwrap_err().kind(),
            ErrorKind::NoCurrentLoop
        );
        p.set_event_loop(Some(l.clone())).unwrap();
        // Let task b set its own loop before looking again.
        for _ in 0..3 {
            aioloop::yield_now().await;
        }
        let mine = p.get_event_loop().unwrap();
        let p2 = p.clone();
        let child = aioloop::get_running_loop()
            .unwrap()
            .create_task(async move { p2.get_event_loop().unwrap() })
            .await
            .unwrap();
        (mine, child)
    });
    let (p, l) = (policy.clone(), lb.clone());
    let b = lp.create_task_in_context(TaskContextId::new(), async move {
        assert_eq!(
            p.get_event_loop().unwrap_err().kind(),
            ErrorKind::NoCurrentLoop
        );
        p.set_event_loop(Some(l.clone())).unwrap();
        for _ in 0..3 {
            aioloop::yield_now().await;
        }
        p.get_event_loop().unwrap()
    });
    let ((a_loop, a_child), b_loop) = lp
        .run_until_complete(async move { (a.await.unwrap(), b.await.unwrap()) })
        .unwrap();
    assert_eq!(a_loop, la);
    assert_eq!(a_child, la);
    assert_eq!(b_loop, lb);
    // The thread's root context has none of them.
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    la.close().unwrap();
    lb.close().unwrap();
    lp.close().unwrap();
}

#[test]
fn task_context_policy_clearing_one_context_leaves_the_others() {
    let lp = EventLoop::new().unwrap();
    let policy = Rc::new(ContextPolicy::new(TaskContext));
    let root_loop = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(root_loop.clone())).unwrap();
    let (p, r) = (policy.clone(), root_loop.clone());
    let t = lp.create_task_in_context(TaskContextId::new(), async move {
        let mine = p.new_event_loop().unwrap();
        p.set_event_loop(Some(mine.clone())).unwrap();
        let got = p.get_event_loop().unwrap();
        p.set_event_loop(None).unwrap();
        let after = p.get_event_loop().map(|_| ()).unwrap_err().kind();
        let is_root = got == r;
        mine.close().unwrap();
        (got == mine, is_root, after)
    });
    let (own, is_root, after) = lp.run_until_complete(t).unwrap().unwrap();
    assert!(own);
    assert!(!is_root);
    assert_eq!(after, ErrorKind::NoCurrentLoop);
    assert_eq!(policy.get_event_loop().unwrap(), root_loop);
    policy.set_event_loop(None).unwrap();
    root_loop.close().unwrap();
    lp.close().unwrap();
}

#[test]
fn task_context_policy_error_names_the_task_context() {
    let ctx = TaskContextId::new();
    let lp = EventLoop::new().unwrap();
    let policy = Rc::new(ContextPolicy::new(TaskContext));
    let p = policy.clone();
    let t = lp.create_task_in_context(ctx, async move {
        p.get_event_loop().map(|_| ()).unwrap_err().to_string()
    });
    let msg = lp.run_until_complete(t).unwrap().unwrap();
    assert!(
        msg.contains(&format!("task context {}", ctx.as_u64())),
        "{msg}"
    );
    assert!(msg.contains("set_event_loop"), "{msg}");
    lp.close().unwrap();
}

// ---------------------------------------------------------------------------
// HostContext

#[test]
fn host_context_is_an_error_outside_any_host_context() {
    let err = HostContext.current_id().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContext);
    assert!(err.message().contains("enter_host_context"), "{err}");
}

#[test]
fn host_context_guards_nest_and_restore() {
    assert!(HostContext.current_id().is_err());
    {
        let outer = enter_host_context(1);
        assert_eq!(outer.id(), HostId::from(1));
        assert_eq!(HostContext.current_id().unwrap(), HostId::from(1));
        {
            let _inner = enter_host_context(HostId::from(2));
            assert_eq!(HostContext.current_id().unwrap().as_u64(), 2);
            {
                // Re-entering the same id is fine.
                let _again = enter_host_context(1);
                assert_eq!(HostContext.current_id().unwrap(), HostId::from(1));
            }
            assert_eq!(HostContext.current_id().unwrap(), HostId::from(2));
        }
        assert_eq!(HostContext.current_id().unwrap(), HostId::from(1));
    }
    assert_eq!(
        HostContext.current_id().unwrap_err().kind(),
        ErrorKind::NoContext
    );
}

#[test]
fn dropping_guards_out_of_order_removes_only_their_own_entry() {
    let outer = enter_host_context(1);
    let inner = enter_host_context(2);
    drop(outer);
    // As documented: the out-of-order drop leaves `inner` current.
    assert_eq!(HostContext.current_id().unwrap(), HostId::from(2));
    let newer = enter_host_context(3);
    drop(inner);
    // Dropping the old inner guard does not remove the newer one.
    assert_eq!(HostContext.current_id().unwrap(), HostId::from(3));
    drop(newer);
    assert_eq!(
        HostContext.current_id().unwrap_err().kind(),
        ErrorKind::NoContext
    );
}

#[test]
fn host_context_is_per_thread() {
    let _g = enter_host_context(5);
    let there = std::thread::spawn(|| HostContext.current_id().map_err(|e| e.kind()))
        .join()
        .unwrap();
    assert_eq!(there, Err(ErrorKind::NoContext));
    assert_eq!(HostContext.current_id().unwrap(), HostId::from(5));
}

#[test]
fn host_policy_errors_outside_a_host_context() {
    let policy = ContextPolicy::new(HostContext);
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoContext
    );
    let lp = policy.new_event_loop().unwrap();
    assert_eq!(
        policy.set_event_loop(Some(lp.clone())).unwrap_err().kind(),
        ErrorKind::NoContext
    );
    assert_eq!(
        policy.set_event_loop(None).unwrap_err().kind(),
        ErrorKind::NoContext
    );
    // The failed set stored nothing anywhere.
    let _g = enter_host_context(0);
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    lp.close().unwrap();
}

#[test]
fn host_policy_keeps_independent_loops_per_host_id() {
    let policy = ContextPolicy::new(HostContext);
    let l1 = policy.new_event_loop().unwrap();
    let l2 = policy.new_event_loop().unwrap();

    {
        let _h = enter_host_context(1);
        policy.set_event_loop(Some(l1.clone())).unwrap();
        assert_eq!(policy.get_event_loop().unwrap(), l1);
    }
    {
        let _h = enter_host_context(2);
        let err = policy.get_event_loop().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
        assert!(err.message().contains("host context 2"), "{err}");
        policy.set_event_loop(Some(l2.clone())).unwrap();
        assert_eq!(policy.get_event_loop().unwrap(), l2);
    }
    {
        let _h = enter_host_context(1);
        assert_eq!(policy.get_event_loop().unwrap(), l1);
        // Nested: the innermost id decides.
        let _h2 = enter_host_context(2);
        assert_eq!(policy.get_event_loop().unwrap(), l2);
    }
    {
        let _h = enter_host_context(1);
        policy.set_event_loop(None).unwrap();
        assert_eq!(
            policy.get_event_loop().unwrap_err().kind(),
            ErrorKind::NoCurrentLoop
        );
    }
    {
        let _h = enter_host_context(2);
        assert_eq!(policy.get_event_loop().unwrap(), l2);
        policy.set_event_loop(None).unwrap();
    }
    l1.close().unwrap();
    l2.close().unwrap();
}

#[test]
fn host_policy_slots_are_per_thread_too() {
    let policy = Arc::new(ContextPolicy::new(HostContext));
    let lp = policy.new_event_loop().unwrap();
    let _h = enter_host_context(7);
    policy.set_event_loop(Some(lp.clone())).unwrap();
    let p = policy.clone();
    let kind = std::thread::spawn(move || {
        let _h = enter_host_context(7);
        p.get_event_loop().map(|_| ()).unwrap_err().kind()
    })
    .join()
    .unwrap();
    assert_eq!(kind, ErrorKind::NoCurrentLoop);
    assert_eq!(policy.get_event_loop().unwrap(), lp);
    policy.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn host_policy_installed_process_wide() {
    let _g = global_policy();
    aioloop::set_event_loop_policy(Some(Arc::new(ContextPolicy::new(HostContext))));
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoContext
    );

    let l1 = aioloop::new_event_loop().unwrap();
    let l2 = aioloop::new_event_loop().unwrap();
    {
        let _h = enter_host_context(1);
        aioloop::set_event_loop(Some(l1.clone())).unwrap();
    }
    {
        let _h = enter_host_context(2);
        aioloop::set_event_loop(Some(l2.clone())).unwrap();
    }
    {
        let _h = enter_host_context(1);
        assert_eq!(aioloop::get_event_loop().unwrap(), l1);
    }
    {
        let _h = enter_host_context(2);
        assert_eq!(aioloop::get_event_loop().unwrap(), l2);
        // Inside a running loop the running loop wins, host context or not.
        let l1c = l1.clone();
        let got = l1
            .run_until_complete(async move { aioloop::get_event_loop().unwrap() == l1c })
            .unwrap();
        assert!(got);
    }
    // With no host context, running still finds the running loop.
    let l2c = l2.clone();
    assert!(l2
        .run_until_complete(async move { aioloop::get_event_loop().unwrap() == l2c })
        .unwrap());

    for id in [1, 2] {
        let _h = enter_host_context(id);
        aioloop::set_event_loop(None).unwrap();
    }
    l1.close().unwrap();
    l2.close().unwrap();
}

#[test]
fn run_under_a_host_policy_uses_the_entered_host_context() {
    let _g = global_policy();
    let policy = Arc::new(ContextPolicy::new(HostContext));
    aioloop::set_event_loop_policy(Some(policy.clone()));

    // No host context: run cannot make its loop current.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let err = aioloop::run(async move { r.set(true) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContext);
    assert!(!ran.get());

    let _h = enter_host_context(3);
    let p = policy.clone();
    let (running, current) = aioloop::run(async move {
        (
            aioloop::get_running_loop().unwrap(),
            p.get_event_loop().unwrap(),
        )
    })
    .unwrap();
    assert_eq!(running, current);
    assert!(running.is_closed());
    // Cleared at the end of run.
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
}

// ---------------------------------------------------------------------------
// A user-written Context

thread_local! {
    static TENANT: Cell<u32> = const { Cell::new(0) };
}

fn set_tenant(id: u32) {
    TENANT.with(|t| t.set(id));
}

#[derive(Debug, Default)]
struct TenantContext;

impl Context for TenantContext {
    type Id = u32;

    fn current_id(&self) -> Result<u32, Error> {
        match TENANT.with(Cell::get) {
            0 => Err(Error::new(ErrorKind::NoContext, "no tenant selected")),
            id => Ok(id),
        }
    }

    fn describe(&self, id: &u32) -> String {
        format!("tenant #{id}")
    }
}

#[test]
fn custom_context_keys_a_context_policy() {
    let policy = ContextPolicy::new(TenantContext);
    let _ctx: &TenantContext = policy.context();

    set_tenant(0);
    let err = policy.get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoContext);
    assert_eq!(err.message(), "no tenant selected");
    assert!(policy.set_event_loop(None).is_err());

    let a = policy.new_event_loop().unwrap();
    let b = policy.new_event_loop().unwrap();
    set_tenant(1);
    policy.set_event_loop(Some(a.clone())).unwrap();
    set_tenant(2);
    let err = policy.get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
    assert!(err.message().contains("tenant #2"), "{err}");
    policy.set_event_loop(Some(b.clone())).unwrap();

    set_tenant(1);
    assert_eq!(policy.get_event_loop().unwrap(), a);
    set_tenant(2);
    assert_eq!(policy.get_event_loop().unwrap(), b);
    policy.set_event_loop(None).unwrap();
    set_tenant(1);
    assert_eq!(policy.get_event_loop().unwrap(), a);
    policy.set_event_loop(None).unwrap();
    set_tenant(0);

    a.close().unwrap();
    b.close().unwrap();
}

/// A context whose id is a `String`, built from the thread-local tenant.
#[derive(Debug)]
struct NamedTenant;

impl Context for NamedTenant {
    type Id = String;

    fn current_id(&self) -> Result<String, Error> {
        Ok(format!("tenant-{}", TENANT.with(Cell::get)))
    }
}

#[test]
fn custom_context_default_describe_uses_debug() {
    set_tenant(9);
    let policy = ContextPolicy::new(NamedTenant);
    let err = policy.get_event_loop().unwrap_err();
    set_tenant(0);
    assert!(err.message().contains("\"tenant-9\""), "{err}");
}

// ---------------------------------------------------------------------------
// ContextPolicy instances

#[test]
fn two_context_policies_do_not_share_slots() {
    let lp = ContextPolicy::new(ThreadContext).new_event_loop().unwrap();

    let t1 = ContextPolicy::new(ThreadContext);
    let t2 = ContextPolicy::new(ThreadContext);
    t1.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(t1.get_event_loop().unwrap(), lp);
    assert_eq!(
        t2.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );

    let h1 = ContextPolicy::new(HostContext);
    let h2 = ContextPolicy::new(HostContext);
    let _h = enter_host_context(1);
    h1.set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(h1.get_event_loop().unwrap(), lp);
    assert_eq!(
        h2.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    h2.set_event_loop(None).unwrap();
    assert_eq!(h1.get_event_loop().unwrap(), lp);

    t1.set_event_loop(None).unwrap();
    h1.set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn a_new_context_policy_does_not_see_a_dropped_ones_loops() {
    let lp = EventLoop::new().unwrap();
    let first = ContextPolicy::new(ThreadContext);
    first.set_event_loop(Some(lp.clone())).unwrap();
    drop(first);
    let second = ContextPolicy::new(ThreadContext);
    assert_eq!(
        second.get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    lp.close().unwrap();
}

#[test]
fn context_policy_with_backend() {
    let policy = ContextPolicy::new(HostContext).with_backend(Backend::Selector);
    let lp = policy.new_event_loop().unwrap();
    assert_eq!(lp.backend(), Backend::Selector);
    // new_event_loop needs no context and makes nothing current.
    let _h = enter_host_context(4);
    assert!(policy.get_event_loop().is_err());
    lp.close().unwrap();
}

#[test]
fn context_policy_works_from_many_threads() {
    let policy = Arc::new(ContextPolicy::new(HostContext));
    let workers: Vec<_> = (0..4u64)
        .map(|i| {
            let p = policy.clone();
            std::thread::spawn(move || {
                let lp = p.new_event_loop().unwrap();
                let _h = enter_host_context(i % 2);
                p.set_event_loop(Some(lp.clone())).unwrap();
                for _ in 0..50 {
                    assert_eq!(p.get_event_loop().unwrap(), lp);
                    std::thread::yield_now();
                }
                p.set_event_loop(None).unwrap();
                lp.close().unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn host_context_guard_survives_a_running_loop() {
    let policy = Rc::new(ContextPolicy::new(HostContext));
    let lp = EventLoop::new().unwrap();
    let inner_loop = policy.new_event_loop().unwrap();
    let _h = enter_host_context(11);
    policy.set_event_loop(Some(inner_loop.clone())).unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (p, s) = (policy.clone(), seen.clone());
    let t = lp.create_task(async move {
        *s.borrow_mut() = Some(p.get_event_loop().unwrap());
    });
    lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(seen.borrow().as_ref(), Some(&inner_loop));
    policy.set_event_loop(None).unwrap();
    inner_loop.close().unwrap();
    lp.close().unwrap();
}
