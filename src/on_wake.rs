//! A future polled only when its own waker fired. A connection's task is
//! woken each time its requests make progress (a read, a write, a backend's
//! reply), and `tokio::select!` polls every branch at each wake; the
//! connection's rare events (idle timer, drain, stop, GOAWAY) need a poll
//! only when one of them woke the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps `inner`, polling it at its first poll and then only after it woke
/// its waker.
pub struct OnWake<F> {
    inner: F,
    signal: Arc<Signal>,
}

/// The waker handed to the inner future: notes the wake, then wakes the task.
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

impl<F: Future + Unpin> OnWake<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            signal: Arc::new(Signal {
                woken: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
        }
    }
}

impl<F: Future + Unpin> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self
                .signal
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !self.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(&self.signal));
        Pin::new(&mut self.inner).poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `ready` is set, pending (and waking
    /// nobody) before.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        ready: &'a AtomicBool,
        waker: &'a Mutex<Option<Waker>>,
    }

    impl Future for Counted<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.ready.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_then_only_after_its_wake() {
        let (polls, ready, waker) = (
            AtomicUsize::new(0),
            AtomicBool::new(false),
            Mutex::new(None),
        );
        let mut on_wake = OnWake::new(Counted {
            polls: &polls,
            ready: &ready,
            waker: &waker,
        });
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(Pin::new(&mut on_wake).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled once, not woken since"
        );
        ready.store(true, Ordering::Relaxed);
        let inner: Waker = waker.lock().unwrap().take().unwrap();
        inner.wake();
        assert!(Pin::new(&mut on_wake).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_of_the_inner_future_wakes_the_task() {
        let sleep = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        OnWake::new(sleep).await;
        assert_eq!(started.elapsed().as_secs(), 5);
    }
}
