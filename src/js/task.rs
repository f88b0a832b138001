//! The JS `Task` class and `Task` ↔ `Promise` interop.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{report_thrown, to_js_error};
use crate::{EventLoop, Task};

type JsResult = Result<JsValue, JsValue>;

/// A task created by `createTask(fn)` (JS class `Task`). It is *thenable*:
/// `await task` gives what `fn` returned (or resolved to), or throws what it
/// threw, a `CancelledError` after `cancel()`, or a `ClosedError` when the
/// loop closed first.
///
/// A task whose failure nobody asked for (no `await`, `then` or `promise`
/// before it ended) reports it to the loop's exception handler instead
/// ("Task exception was never retrieved"), so nothing fails silently and no
/// unhandled rejection ends a Node process.
///
/// # Examples
///
/// ```js
/// const task = lp.createTask(async () => 42);
/// console.log(await task);   // 42
/// ```
#[wasm_bindgen(js_name = Task)]
#[derive(Debug)]
pub struct JsTask {
    task: Rc<RefCell<Task<JsResult>>>,
    observed: Rc<Cell<bool>>,
    promise: RefCell<Option<Promise>>,
}

impl JsTask {
    pub(super) fn spawn(lp: &EventLoop, func: Function) -> JsTask {
        let observed = Rc::new(Cell::new(false));
        let seen = observed.clone();
        let task = lp.create_task(async move {
            // Aborted if this future is dropped unfinished (cancel, close).
            let mut abort = AbortOnDrop::new();
            // The synchronous part of `func` runs here, inside the task's
            // step (its task context is entered).
            let result = match func.call1(&JsValue::UNDEFINED, &abort.signal()) {
                Err(thrown) => Err(thrown),
                Ok(v) if v.has_type::<Promise>() || is_thenable(&v) => {
                    JsFuture::from(Promise::resolve(&v)).await
                }
                Ok(v) => Ok(v),
            };
            abort.disarm();
            if let (Err(thrown), false) = (&result, seen.get()) {
                if let Ok(lp) = crate::get_running_loop() {
                    report_thrown(&lp, "Task exception was never retrieved", thrown.clone());
                }
            }
            result
        });
        JsTask {
            task: Rc::new(RefCell::new(task)),
            observed,
            promise: RefCell::new(None),
        }
    }
}

/// The `AbortController` whose signal a JS task's function receives:
/// aborted (with a `CancelledError` as the reason) when the task ends
/// without finishing (cancelled, or its loop closed), so JS code can stop
/// what it started (`fetch(url, { signal })`).
struct AbortOnDrop {
    controller: Option<JsValue>,
}

impl AbortOnDrop {
    fn new() -> AbortOnDrop {
        let ctor = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("AbortController"))
            .ok()
            .and_then(|c| c.dyn_into::<Function>().ok());
        let controller =
            ctor.and_then(|c| js_sys::Reflect::construct(&c, &js_sys::Array::new()).ok());
        AbortOnDrop { controller }
    }

    fn signal(&self) -> JsValue {
        self.controller
            .as_ref()
            .and_then(|c| js_sys::Reflect::get(c, &JsValue::from_str("signal")).ok())
            .unwrap_or(JsValue::UNDEFINED)
    }

    fn disarm(&mut self) {
        self.controller = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(c) = self.controller.take() else {
            return;
        };
        let abort = js_sys::Reflect::get(&c, &JsValue::from_str("abort"))
            .ok()
            .and_then(|a| a.dyn_into::<Function>().ok());
        if let Some(abort) = abort {
            let reason = to_js_error(&crate::Error::new(
                crate::ErrorKind::Cancelled,
                "the task was cancelled, or its event loop closed, before it finished",
            ));
            // What abort listeners throw is theirs: the task is over anyway.
            let _ = abort.call1(&c, &reason);
        }
    }
}

fn is_thenable(v: &JsValue) -> bool {
    v.is_object()
        && js_sys::Reflect::get(v, &JsValue::from_str("then")).is_ok_and(|t| t.is_function())
}

#[wasm_bindgen(js_class = Task)]
impl JsTask {
    /// `cancel()`: at its next step the task ends with a `CancelledError`
    /// and the `signal` its function received is aborted (a JS promise it
    /// was awaiting keeps running unless it listens to that signal).
    /// Returns `false` when the task is already done.
    ///
    /// # Examples
    ///
    /// ```js
    /// const task = lp.createTask(() => new Promise(() => {}));
    /// task.cancel();             // true
    /// await task.promise.catch((e) => e.name); // 'CancelledError'
    /// ```
    pub fn cancel(&self) -> bool {
        self.task.try_borrow().is_ok_and(|t| t.cancel())
    }

    /// `done()`: whether the task has finished (value, error or cancelled).
    ///
    /// # Examples
    ///
    /// ```js
    /// if (task.done()) console.log('finished');
    /// ```
    pub fn done(&self) -> bool {
        self.task.try_borrow().map_or(true, |t| t.done())
    }

    /// `promise`: a `Promise` of the task's result (the same one each time).
    ///
    /// # Examples
    ///
    /// ```js
    /// const value = await task.promise;
    /// ```
    #[wasm_bindgen(getter)]
    pub fn promise(&self) -> Promise {
        self.observed.set(true);
        self.promise
            .borrow_mut()
            .get_or_insert_with(|| {
                let task = self.task.clone();
                wasm_bindgen_futures::future_to_promise(async move {
                    let r = poll_fn(|cx| match task.try_borrow_mut() {
                        Ok(mut t) => std::future::Future::poll(Pin::new(&mut *t), cx),
                        Err(_) => {
                            cx.waker().wake_by_ref();
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                    match r {
                        Ok(inner) => inner,
                        Err(e) => Err(to_js_error(&e)),
                    }
                })
            })
            .clone()
    }

    /// `then(onFulfilled, onRejected)`: makes a `Task` awaitable.
    ///
    /// # Examples
    ///
    /// ```js
    /// task.then((v) => console.log(v), (e) => console.error(e.kind));
    /// ```
    pub fn then(
        &self,
        #[wasm_bindgen(js_name = onFulfilled)] on_fulfilled: Option<Function>,
        #[wasm_bindgen(js_name = onRejected)] on_rejected: Option<Function>,
    ) -> Promise {
        let p = self.promise();
        let undef = JsValue::UNDEFINED;
        let ok = on_fulfilled.map_or(undef.clone(), JsValue::from);
        let err = on_rejected.map_or(undef, JsValue::from);
        // `Promise.prototype.then` with both arguments possibly undefined.
        let then: Function = js_sys::Reflect::get(&p, &JsValue::from_str("then"))
            .map(JsCast::unchecked_into)
            .unwrap_or_else(|_| Function::new_no_args(""));
        then.call2(&p, &ok, &err)
            .map(JsCast::unchecked_into)
            .unwrap_or(p)
    }
}
