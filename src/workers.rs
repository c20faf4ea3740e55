//! A small pool of scoped worker threads taking jobs by index, in order, stopping at the
//! first error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The data behind `m`, even when a worker panicked holding it (what it guards is
/// always left consistent between statements).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `job(&mut state, i)` for every `i` in `0..count` on up to `threads` threads, each
/// with its own `state` made by `init`. Jobs are taken in index order. After the first
/// error no new job starts; that error is returned once the running ones are done.
pub fn run<S>(
    threads: usize,
    count: usize,
    init: impl Fn() -> Result<S> + Sync,
    job: impl Fn(&mut S, usize) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, count.max(1)) {
            scope.spawn(|| {
                let work = || -> Result<()> {
                    let mut state = init()?;
                    while !failed.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= count {
                            break;
                        }
                        job(&mut state, i)?;
                    }
                    Ok(())
                };
                if let Err(e) = work() {
                    failed.store(true, Ordering::SeqCst);
                    lock(&first).get_or_insert(e);
                }
            });
        }
    });
    match first.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::usage;

    #[test]
    fn every_job_runs_once() {
        let done: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        run(
            4,
            done.len(),
            || Ok(()),
            |_, i| {
                done[i].fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert!(done.iter().all(|d| d.load(Ordering::SeqCst) == 1));
        run(3, 0, || Ok(()), |_, _| unreachable!()).unwrap();
    }

    #[test]
    fn the_first_error_stops_new_jobs() {
        let started = AtomicUsize::new(0);
        let err = run(
            2,
            1000,
            || Ok(()),
            |_, i| {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 5 {
                    Err(usage("job 5 failed"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("job 5 failed"), "{err}");
        assert!(started.load(Ordering::SeqCst) < 20);
    }

    #[test]
    fn a_failed_init_is_the_error() {
        let err = run(2, 10, || Err::<(), _>(usage("no client")), |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("no client"));
    }
}
