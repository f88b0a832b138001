//! A task's one allocation: [`TaskCell`], shared by the loop (which polls
//! the future) and the task's handle (which takes the output).
//!
//! This is the one place in the task code that needs `unsafe`: safe Rust
//! cannot poll a future kept in an `Rc` (shared ownership gives `&`, polling
//! needs `Pin<&mut>`), so without it a task takes a second allocation (a
//! `Pin<Box<F>>` inside the shared part) or a type-erased output that the
//! handle must downcast, and both cost more than a whole spawn of
//! wasm-bindgen-futures on wasm32 (an `Any` downcast is an indirect call
//! returning 16 bytes: about 8 ns in V8). Here the future sits in a
//! `RefCell` inside a pinned `Rc`, and [`TaskCell::with_stage`] hands out
//! `Pin<&mut>` to it. The `unsafe` block is that one `Pin::new_unchecked`;
//! see its SAFETY comment for why the value never moves.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::pin::Pin;

/// A task's shared allocation: `shared` (sized, typed by the output: the
/// handle reads it without any indirect call) and the task's future in
/// `stage`, which is last so that the handle can erase it
/// (`TaskCell<T, dyn Erased>`) while the loop erases the whole cell
/// (`dyn Step`).
pub(crate) struct TaskCell<T, S: ?Sized> {
    shared: T,
    // Private, and only ever reached through `with_stage`: no `&mut S` ever
    // leaves this module unpinned, and nothing moves it out.
    stage: RefCell<S>,
}

impl<T, S> TaskCell<T, S> {
    /// A cell around `stage`; pin it (`Rc::pin`) to use it.
    pub(crate) fn new(shared: T, stage: S) -> TaskCell<T, S> {
        TaskCell {
            shared,
            stage: RefCell::new(stage),
        }
    }
}

impl<T, S: ?Sized> TaskCell<T, S> {
    /// The part the handle and the task share.
    #[inline]
    pub(crate) fn shared(&self) -> &T {
        &self.shared
    }

    /// Runs `f` with pinned mutable access to the stage; `None` (and `f` is
    /// not called) while the stage is already borrowed (a step calling into
    /// its own task again).
    #[inline]
    pub(crate) fn with_stage<R>(self: Pin<&Self>, f: impl FnOnce(Pin<&mut S>) -> R) -> Option<R> {
        let mut guard = self.get_ref().stage.try_borrow_mut().ok()?;
        // SAFETY: `self` is pinned, so this `TaskCell` stays where it is
        // until it is dropped; `stage` is a field of it that this module
        // never moves out (there is no `into_inner`, `replace`, `swap` or
        // `get_mut`, `TaskCell` has no `Drop` impl, and the fields are
        // private), and the only `&mut S` made from it is this one, which
        // is pinned before it leaves. So the value behind `guard` is never
        // moved until it is dropped in place with the cell: the pinning
        // contract holds. (`TaskCell<T, S>` is `Unpin` only when `S` is, in
        // which case pinning promises nothing anyway.)
        let stage = unsafe { Pin::new_unchecked(&mut *guard) };
        Some(f(stage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::future::Future;
    use std::marker::PhantomPinned;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    /// A future that checks it is never moved between polls (it records its
    /// own address at the first poll) and counts its drops.
    struct Pinned<'a> {
        at: Cell<Option<usize>>,
        polls: Cell<u32>,
        drops: &'a Cell<u32>,
        _pin: PhantomPinned,
    }

    impl<'a> Pinned<'a> {
        fn new(drops: &'a Cell<u32>) -> Pinned<'a> {
            Pinned {
                at: Cell::new(None),
                polls: Cell::new(0),
                drops,
                _pin: PhantomPinned,
            }
        }
    }

    impl Future for Pinned<'_> {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
            let here = &*self as *const Self as usize;
            let at = self.at.get().unwrap_or(here);
            assert_eq!(at, here, "the future moved");
            self.at.set(Some(at));
            self.polls.set(self.polls.get() + 1);
            if self.polls.get() < 3 {
                Poll::Pending
            } else {
                Poll::Ready(self.polls.get())
            }
        }
    }

    impl Drop for Pinned<'_> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn the_stage_is_polled_in_place_and_dropped_once() {
        let drops = Cell::new(0);
        let cell = Rc::pin(TaskCell::new(7u8, Some(Pinned::new(&drops))));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut out = None;
        // The Rc moves around (clones, a move into a Vec): the stage does not.
        let other = cell.clone();
        let moved = vec![cell];
        for _ in 0..3 {
            let r = moved[0].as_ref().with_stage(|mut s| {
                let fut = s.as_mut().as_pin_mut().expect("not finished");
                fut.poll(&mut cx)
            });
            if let Some(Poll::Ready(v)) = r {
                out = Some(v);
            }
        }
        assert_eq!(out, Some(3));
        assert_eq!(*other.shared(), 7);
        // Finishing drops the future in place.
        other.as_ref().with_stage(|mut s| s.set(None)).unwrap();
        assert_eq!(drops.get(), 1);
        drop(moved);
        drop(other);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn a_borrowed_stage_is_refused_not_aliased() {
        let cell = Rc::pin(TaskCell::new((), 5u32));
        let inner = cell.as_ref().with_stage(|_outer| {
            // A step that reaches its own task again gets nothing.
            cell.as_ref().with_stage(|_| ()).is_none()
        });
        assert_eq!(inner, Some(true));
        assert_eq!(cell.as_ref().with_stage(|s| *s), Some(5));
    }

    #[test]
    fn an_unfinished_stage_is_dropped_with_the_last_reference() {
        let drops = Cell::new(0);
        let cell = Rc::pin(TaskCell::new((), Pinned::new(&drops)));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let r = cell.as_ref().with_stage(|s| s.poll(&mut cx));
        assert_eq!(r, Some(Poll::Pending));
        let second = cell.clone();
        drop(cell);
        assert_eq!(drops.get(), 0);
        drop(second);
        assert_eq!(drops.get(), 1);
    }
}
