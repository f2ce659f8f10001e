//! Where a run's threads wait for each other, and lock helpers that carry
//! on past a poisoned lock (a panicking thread breaks the meeting instead).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(super) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a batch's threads wait for each other between passes: spinning,
/// since the waits are a few microseconds, and yielding after a while, for
/// more threads than cores.
pub(super) struct Meeting {
    threads: usize,
    arrived: AtomicUsize,
    passed: AtomicUsize,
    /// Set when a thread panics, so that the others stop waiting for it.
    broken: AtomicBool,
}

impl Meeting {
    pub(super) const fn new(threads: usize) -> Self {
        Self {
            threads,
            arrived: AtomicUsize::new(0),
            passed: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Returns once every thread has called it.
    pub(super) fn wait(&self) {
        let round = self.passed.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.passed.fetch_add(1, Ordering::Release);
        } else {
            self.until(|| self.passed.load(Ordering::Acquire) != round);
        }
    }

    /// Returns once `done` does.
    pub(super) fn until(&self, done: impl Fn() -> bool) {
        let mut spins = 0u32;
        while !done() {
            assert!(
                !self.broken.load(Ordering::Relaxed),
                "another training thread panicked"
            );
            if spins < 4096 {
                spins += 1;
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Marks the meeting broken if its thread unwinds.
pub(super) struct Attendance<'a>(pub(super) &'a Meeting);

impl Drop for Attendance<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Relaxed);
        }
    }
}
