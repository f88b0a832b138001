//! Policies and host contexts for JS: `getEventLoop`, `setEventLoop`,
//! `newEventLoop`, `getRunningLoop`, `getEventLoopPolicy`,
//! `setEventLoopPolicy`, the `EventLoopPolicy` class and `withContext`.

use std::sync::Arc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::{to_js_error, JsEventLoop};
use crate::{
    ContextPolicy, DefaultEventLoopPolicy, EventLoopPolicy, HostContext, HostId, TaskContext,
};

/// An event loop policy for JS (class `EventLoopPolicy`): decides which
/// loop is current *here*.
///
/// - `EventLoopPolicy.default()`: one current loop for the whole JS realm
///   (asyncio's default policy; wasm has one thread);
/// - `EventLoopPolicy.hostContext()`: one current loop per host id entered
///   with `withContext(id, fn)` (a panel, a worker, a request…);
/// - `EventLoopPolicy.taskContext()`: one current loop per task context
///   (inherited by the tasks a task creates).
///
/// # Examples
///
/// ```js
/// setEventLoopPolicy(EventLoopPolicy.hostContext());
/// ```
#[wasm_bindgen(js_name = EventLoopPolicy)]
#[derive(Debug, Clone)]
pub struct JsEventLoopPolicy {
    policy: Arc<dyn EventLoopPolicy>,
    id: u32,
}

fn kind_of(policy: &dyn EventLoopPolicy) -> &'static str {
    if policy.downcast_ref::<DefaultEventLoopPolicy>().is_some() {
        "default"
    } else if policy
        .downcast_ref::<ContextPolicy<HostContext>>()
        .is_some()
    {
        "hostContext"
    } else if policy
        .downcast_ref::<ContextPolicy<TaskContext>>()
        .is_some()
    {
        "taskContext"
    } else {
        "custom"
    }
}

impl JsEventLoopPolicy {
    /// Wraps any Rust policy for JS (its `kind` is `"custom"` unless it is
    /// one of the built-in ones).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(all(target_arch = "wasm32", feature = "js"))] {
    /// use std::sync::Arc;
    /// let p = aioloop::js::JsEventLoopPolicy::from_policy(Arc::new(aioloop::DefaultEventLoopPolicy::new()));
    /// assert_eq!(p.kind(), "default");
    /// # }
    /// ```
    pub fn from_policy(policy: Arc<dyn EventLoopPolicy>) -> JsEventLoopPolicy {
        let id = POLICIES.with(|p| {
            let mut p = p.borrow_mut();
            if let Some(i) = p.iter().position(|w| {
                w.upgrade()
                    .is_some_and(|known| Arc::ptr_eq(&known, &policy))
            }) {
                return i;
            }
            let weak = Arc::downgrade(&policy);
            match p.iter().position(|w| w.strong_count() == 0) {
                Some(free) => {
                    p[free] = weak;
                    free
                }
                None => {
                    p.push(weak);
                    p.len() - 1
                }
            }
        });
        JsEventLoopPolicy {
            policy,
            id: u32::try_from(id).unwrap_or(u32::MAX),
        }
    }
}

#[wasm_bindgen(js_class = EventLoopPolicy)]
impl JsEventLoopPolicy {
    /// `EventLoopPolicy.default()`: a new default policy (one current loop).
    ///
    /// # Examples
    ///
    /// ```js
    /// setEventLoopPolicy(EventLoopPolicy.default());
    /// ```
    #[wasm_bindgen(js_name = "default")]
    pub fn default_policy() -> JsEventLoopPolicy {
        JsEventLoopPolicy::from_policy(Arc::new(DefaultEventLoopPolicy::new()))
    }

    /// `EventLoopPolicy.hostContext()`: one current loop per host id (see
    /// `withContext`). Outside any `withContext`, its methods fail with a
    /// `NoContextError`.
    ///
    /// # Examples
    ///
    /// ```js
    /// setEventLoopPolicy(EventLoopPolicy.hostContext());
    /// withContext(1, () => setEventLoop(newEventLoop()));
    /// ```
    #[wasm_bindgen(js_name = hostContext)]
    pub fn host_context() -> JsEventLoopPolicy {
        JsEventLoopPolicy::from_policy(Arc::new(ContextPolicy::new(HostContext)))
    }

    /// `EventLoopPolicy.taskContext()`: one current loop per task context.
    ///
    /// # Examples
    ///
    /// ```js
    /// setEventLoopPolicy(EventLoopPolicy.taskContext());
    /// ```
    #[wasm_bindgen(js_name = taskContext)]
    pub fn task_context() -> JsEventLoopPolicy {
        JsEventLoopPolicy::from_policy(Arc::new(ContextPolicy::new(TaskContext)))
    }

    /// `kind`: `"default"`, `"hostContext"`, `"taskContext"` or `"custom"`.
    ///
    /// # Examples
    ///
    /// ```js
    /// getEventLoopPolicy().kind;  // 'default'
    /// ```
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        kind_of(&*self.policy).to_string()
    }

    /// `getEventLoop()`: this policy's current loop here.
    ///
    /// # Errors
    ///
    /// `NoCurrentLoopError` when none is set here (never creates one);
    /// `NoContextError` for a host-context policy outside `withContext`.
    ///
    /// # Examples
    ///
    /// ```js
    /// const lp = getEventLoopPolicy().getEventLoop();
    /// ```
    #[wasm_bindgen(js_name = getEventLoop)]
    pub fn get_event_loop(&self) -> Result<JsEventLoop, JsValue> {
        self.policy
            .get_event_loop()
            .map(JsEventLoop::from_loop)
            .map_err(|e| to_js_error(&e))
    }

    /// `setEventLoop(lp | null)`: makes `lp` this policy's current loop
    /// here; `null` clears it.
    ///
    /// # Errors
    ///
    /// `NoContextError` for a host-context policy outside `withContext`.
    ///
    /// # Examples
    ///
    /// ```js
    /// const p = getEventLoopPolicy();
    /// p.setEventLoop(p.newEventLoop());
    /// p.setEventLoop(null);
    /// ```
    #[wasm_bindgen(js_name = setEventLoop)]
    pub fn set_event_loop(
        &self,
        #[wasm_bindgen(js_name = lp, unchecked_param_type = "EventLoop | null")]
        event_loop: JsValue,
    ) -> Result<(), JsValue> {
        let lp = loop_arg("EventLoopPolicy.setEventLoop(lp)", &event_loop)?;
        self.policy.set_event_loop(lp).map_err(|e| to_js_error(&e))
    }

    /// `newEventLoop()`: a new loop from this policy (not made current).
    ///
    /// # Errors
    ///
    /// When the backend cannot start.
    ///
    /// # Examples
    ///
    /// ```js
    /// const lp = getEventLoopPolicy().newEventLoop();
    /// ```
    #[wasm_bindgen(js_name = newEventLoop)]
    pub fn new_event_loop(&self) -> Result<JsEventLoop, JsValue> {
        self.policy
            .new_event_loop()
            .map(JsEventLoop::from_loop)
            .map_err(|e| to_js_error(&e))
    }

    /// `policyId`: a number identifying the policy while it lives.
    ///
    /// # Examples
    ///
    /// ```js
    /// getEventLoopPolicy().policyId === getEventLoopPolicy().policyId; // true
    /// ```
    #[wasm_bindgen(getter, js_name = policyId)]
    pub fn policy_id(&self) -> u32 {
        self.id
    }

    /// `equals(other)`: whether both are the same policy object.
    ///
    /// # Examples
    ///
    /// ```js
    /// getEventLoopPolicy().equals(getEventLoopPolicy());  // true
    /// ```
    pub fn equals(&self, other: &JsEventLoopPolicy) -> bool {
        Arc::ptr_eq(&self.policy, &other.policy)
    }
}

/// `getEventLoop()`: the running loop inside a callback or task, else the
/// policy's current loop here.
///
/// # Errors
///
/// `NoCurrentLoopError` when no loop is current here (it never creates
/// one: call `setEventLoop(newEventLoop())` first); `NoContextError` under a
/// host-context policy outside `withContext`.
///
/// # Examples
///
/// ```js
/// setEventLoop(newEventLoop());
/// const lp = getEventLoop();
/// ```
#[wasm_bindgen(js_name = getEventLoop)]
pub fn get_event_loop() -> Result<JsEventLoop, JsValue> {
    crate::get_event_loop()
        .map(JsEventLoop::from_loop)
        .map_err(|e| to_js_error(&e))
}

/// `setEventLoop(lp | null)`: sets the current loop here through the policy.
///
/// # Errors
///
/// `NoContextError` under a host-context policy outside `withContext`.
///
/// # Examples
///
/// ```js
/// setEventLoop(newEventLoop());
/// setEventLoop(null);   // clears it
/// ```
#[wasm_bindgen(js_name = setEventLoop)]
pub fn js_set_event_loop(
    #[wasm_bindgen(js_name = lp, unchecked_param_type = "EventLoop | null")] event_loop: JsValue,
) -> Result<(), JsValue> {
    let lp = loop_arg("setEventLoop(lp)", &event_loop)?;
    crate::set_event_loop(lp).map_err(|e| to_js_error(&e))
}

/// A JS `EventLoop | null` argument as a loop (found by its `loopId`).
fn loop_arg(what: &str, value: &JsValue) -> Result<Option<crate::EventLoop>, JsValue> {
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    js_sys::Reflect::get(value, &JsValue::from_str("loopId"))
        .ok()
        .and_then(|id| id.as_f64())
        .and_then(|id| u16::try_from(id as u32).ok())
        .and_then(crate::event_loop::loop_by_index)
        .map(Some)
        .ok_or_else(|| {
            super::invalid(format!(
                "{what}: lp must be an EventLoop (from newEventLoop() or new EventLoop()) or null"
            ))
        })
}

thread_local! {
    /// The policies handed to JS, by id, so that `setEventLoopPolicy` can
    /// take a JS object by reference (and `null`).
    static POLICIES: std::cell::RefCell<Vec<std::sync::Weak<dyn EventLoopPolicy>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `newEventLoop()`: a new loop from the current policy (not made current).
///
/// # Errors
///
/// When the backend cannot start.
///
/// # Examples
///
/// ```js
/// const lp = newEventLoop();   // not current until setEventLoop(lp)
/// ```
#[wasm_bindgen(js_name = newEventLoop)]
pub fn new_event_loop() -> Result<JsEventLoop, JsValue> {
    crate::new_event_loop()
        .map(JsEventLoop::from_loop)
        .map_err(|e| to_js_error(&e))
}

/// `getRunningLoop()`: the loop whose callback or task is running.
///
/// # Errors
///
/// `NoRunningLoopError` outside a loop's turn (in JS, that includes an
/// async task's code after its first `await`).
///
/// # Examples
///
/// ```js
/// lp.callSoon(() => getRunningLoop().equals(lp)); // true inside a turn
/// ```
#[wasm_bindgen(js_name = getRunningLoop)]
pub fn get_running_loop() -> Result<JsEventLoop, JsValue> {
    crate::get_running_loop()
        .map(JsEventLoop::from_loop)
        .map_err(|e| to_js_error(&e))
}

/// `getEventLoopPolicy()`: the process-wide policy (the default one until
/// replaced).
///
/// # Examples
///
/// ```js
/// const policy = getEventLoopPolicy();
/// ```
#[wasm_bindgen(js_name = getEventLoopPolicy)]
pub fn get_event_loop_policy() -> JsEventLoopPolicy {
    JsEventLoopPolicy::from_policy(crate::get_event_loop_policy())
}

/// `setEventLoopPolicy(policy | null)`: replaces the process-wide policy;
/// `null` restores the default. Loops set through the old policy stay with
/// it.
///
/// # Examples
///
/// ```js
/// setEventLoopPolicy(EventLoopPolicy.hostContext());
/// setEventLoopPolicy(null);   // the default again
/// ```
#[wasm_bindgen(js_name = setEventLoopPolicy)]
pub fn set_event_loop_policy(
    #[wasm_bindgen(unchecked_param_type = "EventLoopPolicy | null")] policy: JsValue,
) -> Result<(), JsValue> {
    if policy.is_null() || policy.is_undefined() {
        crate::set_event_loop_policy(None);
        return Ok(());
    }
    let found = js_sys::Reflect::get(&policy, &JsValue::from_str("policyId"))
        .ok()
        .and_then(|id| id.as_f64())
        .and_then(|id| {
            POLICIES.with(|p| {
                p.borrow()
                    .get(id as usize)
                    .and_then(std::sync::Weak::upgrade)
            })
        });
    match found {
        Some(p) => {
            crate::set_event_loop_policy(Some(p));
            Ok(())
        }
        None => Err(super::invalid(
            "setEventLoopPolicy(policy): policy must be an EventLoopPolicy (EventLoopPolicy.default(), \
             .hostContext(), .taskContext(), getEventLoopPolicy()) or null"
                .to_string(),
        )),
    }
}

/// Checks a host id from JS: an integer from 0 to 2^53 - 1.
fn host_id(id: f64) -> Result<HostId, JsValue> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if (0.0..=MAX_SAFE).contains(&id) && id.fract() == 0.0 {
        Ok(HostId::from(id as u64))
    } else {
        Err(super::invalid(format!(
            "withContext(id, fn): id must be an integer from 0 to Number.MAX_SAFE_INTEGER, got {id}"
        )))
    }
}

/// `withContext(id, fn)`: runs `fn()` in host context `id` (an integer the
/// host chooses: a panel, a worker, a request…) and returns what it
/// returns; rethrows what it throws. Under `EventLoopPolicy.hostContext()`,
/// `getEventLoop()` / `setEventLoop()` inside `fn` use `id`'s slot. Nests.
///
/// # Errors
///
/// `InvalidInputError` for an id that is not a non-negative safe integer;
/// whatever `fn` throws.
///
/// # Examples
///
/// ```js
/// setEventLoopPolicy(EventLoopPolicy.hostContext());
/// const lp = withContext(42, () => { const lp = newEventLoop(); setEventLoop(lp); return lp; });
/// withContext(42, () => getEventLoop().equals(lp));   // true
/// ```
#[wasm_bindgen(js_name = withContext)]
pub fn with_context(
    id: f64,
    #[wasm_bindgen(js_name = "fn")] func: &Function,
) -> Result<JsValue, JsValue> {
    let id = host_id(id)?;
    let _guard = crate::enter_host_context(id);
    func.call0(&JsValue::UNDEFINED)
}

/// `currentContext()`: the innermost host id entered with `withContext`,
/// or `undefined`.
///
/// # Examples
///
/// ```js
/// withContext(3, () => currentContext());   // 3
/// currentContext();                         // undefined
/// ```
#[wasm_bindgen(js_name = currentContext)]
pub fn js_current_context() -> Option<f64> {
    use crate::Context;
    HostContext.current_id().ok().map(|id| id.as_u64() as f64)
}
