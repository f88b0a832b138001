//! Policy semantics on wasm32 (asyncio 3.14's, as natively).
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use aioloop::{Backend, DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, EventLoopPolicy};
use aioloop_wasm_tests::{wait_until, Log, PolicyReset};
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
fn default_policy_never_creates_a_loop_and_keys_one_slot() {
    let _reset = PolicyReset;
    let e = aioloop::get_event_loop().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoCurrentLoop);
    assert!(e.message().contains("set_event_loop"), "{}", e.message());
    let lp = aioloop::new_event_loop().unwrap();
    // new_event_loop does not make the loop current.
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    aioloop::set_event_loop(None).unwrap();
    assert!(aioloop::get_event_loop().is_err());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
fn the_default_policy_uses_the_wasm_backend() {
    let lp = DefaultEventLoopPolicy::new().new_event_loop().unwrap();
    assert_eq!(lp.backend(), Backend::Wasm);
    assert_eq!(EventLoop::new().unwrap().backend(), Backend::Wasm);
    let e = EventLoop::builder()
        .backend(Backend::Selector)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
fn the_policy_slot_is_process_wide_and_none_restores_the_default() {
    let _reset = PolicyReset;
    let a = aioloop::get_event_loop_policy();
    assert!(Arc::ptr_eq(&a, &aioloop::get_event_loop_policy()));
    let mine: Arc<dyn EventLoopPolicy> = Arc::new(DefaultEventLoopPolicy::new());
    aioloop::set_event_loop_policy(Some(mine.clone()));
    assert!(Arc::ptr_eq(&aioloop::get_event_loop_policy(), &mine));
    aioloop::set_event_loop_policy(None);
    let restored = aioloop::get_event_loop_policy();
    assert!(!Arc::ptr_eq(&restored, &mine));
    assert!(restored.downcast_ref::<DefaultEventLoopPolicy>().is_some());
}

/// A custom policy: a default one whose get_event_loop creates a loop on
/// demand (the Rust form of subclassing DefaultEventLoopPolicy).
struct AutoCreate(DefaultEventLoopPolicy);

impl EventLoopPolicy for AutoCreate {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        match self.0.get_event_loop() {
            Ok(lp) => Ok(lp),
            Err(e) if e.kind() == ErrorKind::NoCurrentLoop => {
                let lp = self.0.new_event_loop()?;
                self.0.set_event_loop(Some(lp.clone()))?;
                Ok(lp)
            }
            Err(e) => Err(e),
        }
    }
    fn set_event_loop(&self, lp: Option<EventLoop>) -> Result<(), Error> {
        self.0.set_event_loop(lp)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.0.new_event_loop()
    }
}

#[wasm_bindgen_test]
fn a_custom_policy_overrides_one_method() {
    let _reset = PolicyReset;
    aioloop::set_event_loop_policy(Some(Arc::new(AutoCreate(DefaultEventLoopPolicy::new()))));
    let lp = aioloop::get_event_loop().unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn the_running_loop_wins_inside_its_callbacks() {
    let _reset = PolicyReset;
    let current = aioloop::new_event_loop().unwrap();
    aioloop::set_event_loop(Some(current.clone())).unwrap();
    let other = aioloop::new_event_loop().unwrap();
    let seen = Log::new();
    let s = seen.clone();
    let o = other.clone();
    other
        .call_soon(move || {
            s.push(aioloop::get_event_loop().unwrap() == o);
            s.push(aioloop::get_running_loop().unwrap() == o);
        })
        .unwrap();
    assert!(wait_until(2000.0, || seen.len() == 2).await);
    assert_eq!(seen.get(), [true, true]);
    // Outside a turn there is no running loop.
    assert_eq!(
        aioloop::get_running_loop().unwrap_err().kind(),
        ErrorKind::NoRunningLoop
    );
    assert_eq!(aioloop::get_event_loop().unwrap(), current);
    other.close().unwrap();
    current.close().unwrap();
}
