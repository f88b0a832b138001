//! Loops keyed by host-supplied ids and by task context.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use aioloop::{
    enter_host_context, ContextPolicy, ErrorKind, EventLoop, HostContext, TaskContext,
    TaskContextId,
};
use aioloop_wasm_tests::PolicyReset;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
fn host_ids_key_separate_loops() {
    let _reset = PolicyReset;
    aioloop::set_event_loop_policy(Some(Arc::new(ContextPolicy::new(HostContext))));
    // Outside any host context: a clear error.
    let e = aioloop::get_event_loop().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoContext);
    assert!(
        e.message().contains("enter_host_context"),
        "{}",
        e.message()
    );

    let panel = |id: u64| {
        let _g = enter_host_context(id);
        let lp = aioloop::new_event_loop().unwrap();
        aioloop::set_event_loop(Some(lp.clone())).unwrap();
        lp
    };
    let a = panel(1);
    let b = panel(2);
    assert_ne!(a, b);
    {
        let _g = enter_host_context(1);
        assert_eq!(aioloop::get_event_loop().unwrap(), a);
        {
            // Contexts nest; the innermost wins.
            let _g = enter_host_context(2);
            assert_eq!(aioloop::get_event_loop().unwrap(), b);
        }
        assert_eq!(aioloop::get_event_loop().unwrap(), a);
    }
    {
        let _g = enter_host_context(3);
        assert_eq!(
            aioloop::get_event_loop().unwrap_err().kind(),
            ErrorKind::NoCurrentLoop
        );
    }
    for (id, lp) in [(1, a), (2, b)] {
        let _g = enter_host_context(id);
        aioloop::set_event_loop(None).unwrap();
        lp.close().unwrap();
    }
}

#[wasm_bindgen_test]
async fn task_contexts_key_loops_and_are_inherited() {
    let _reset = PolicyReset;
    aioloop::set_event_loop_policy(Some(Arc::new(ContextPolicy::new(TaskContext))));
    let lp = EventLoop::new().unwrap();
    let inner_loop = EventLoop::new().unwrap();
    let il = inner_loop.clone();
    let ctx = TaskContextId::new();
    let t = lp.create_task_in_context(ctx, async move {
        assert_eq!(TaskContextId::current(), ctx);
        // Set a loop for this task context (through the policy, not the
        // running loop: ask the policy directly).
        let policy = aioloop::get_event_loop_policy();
        policy.set_event_loop(Some(il.clone())).unwrap();
        // A child task inherits the context, so it sees the same slot.
        let lp = aioloop::get_running_loop().unwrap();
        let child = lp.create_task(async move {
            (
                TaskContextId::current(),
                aioloop::get_event_loop_policy().get_event_loop().unwrap(),
            )
        });
        let (child_ctx, child_loop) = child.await.unwrap();
        assert_eq!(child_ctx, ctx);
        assert_eq!(child_loop, il);
        policy.set_event_loop(None).unwrap();
    });
    t.await.unwrap();
    // Another context never saw that loop.
    let other = lp.create_task(async {
        aioloop::get_event_loop_policy()
            .get_event_loop()
            .unwrap_err()
            .kind()
    });
    assert_eq!(other.await.unwrap(), ErrorKind::NoCurrentLoop);
    inner_loop.close().unwrap();
    lp.close().unwrap();
}
