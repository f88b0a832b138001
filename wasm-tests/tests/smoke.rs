#![cfg(target_arch = "wasm32")]
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn callbacks_and_timers_run() {
    let lp = aioloop::EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.call_later(Duration::from_millis(5), move || s.borrow_mut().push(2))
        .unwrap();
    let s = seen.clone();
    lp.call_soon(move || s.borrow_mut().push(1)).unwrap();
    let t = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(10)).await;
        7
    });
    assert_eq!(t.await.unwrap(), 7);
    assert_eq!(*seen.borrow(), [1, 2]);
    lp.close().unwrap();
}
