//! The live progress line on stderr: once a second, how long the measured
//! phase has run, requests so far, the last second's rate and failures.

use crate::recorder::Timeline;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the line is written: redrawn in place on a terminal, one line per
/// second otherwise.
pub struct Progress {
    pub in_place: bool,
}

pub struct RunningProgress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Progress {
    pub fn spawn(self, timeline: Arc<Timeline>) -> RunningProgress {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let done = timeline.completed.load(Ordering::Relaxed);
                let failed = timeline.failed.load(Ordering::Relaxed);
                let now = Instant::now();
                let line = match now.checked_duration_since(timeline.measure_from) {
                    None => "warming up".to_string(),
                    Some(t) => format!(
                        "{:>5.0}s  {done:>10} requests  {:>9} req/s  {failed} failed",
                        t.as_secs_f64(),
                        done - last,
                    ),
                };
                last = done;
                let mut err = std::io::stderr().lock();
                let _ = if self.in_place {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            if self.in_place {
                eprintln!();
            }
        });
        RunningProgress { stop, task }
    }
}

impl RunningProgress {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
