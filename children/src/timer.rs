//! The timer process (SER's `timer.c` ticker): runs registered callbacks at
//! their interval, on a fixed tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::handler::TimerCallback;

/// The timer tick.
pub const TICK: Duration = Duration::from_millis(100);

/// Runs `callbacks` until `stop` is set.
pub fn run(mut callbacks: Vec<Box<dyn TimerCallback>>, stop: &AtomicBool) {
    let start = Instant::now();
    let mut due: Vec<Instant> = callbacks.iter().map(|c| start + c.interval()).collect();
    let mut next_tick = start + TICK;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next_tick {
            std::thread::sleep(next_tick - now);
            continue;
        }
        // Skip missed ticks instead of bursting after a stall.
        while next_tick <= now {
            next_tick += TICK;
        }
        for (cb, when) in callbacks.iter_mut().zip(due.iter_mut()) {
            if *when <= now {
                cb.on_tick(now);
                *when = now + cb.interval().max(TICK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct StopAfter(Arc<AtomicBool>, u32);
    impl TimerCallback for StopAfter {
        fn on_tick(&mut self, _now: Instant) {
            self.1 -= 1;
            if self.1 == 0 {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn ticks_until_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        run(vec![Box::new(StopAfter(stop.clone(), 3))], &stop);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
