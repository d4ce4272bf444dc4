//! A progress bar for scenarios that run longer than a few seconds.
//!
//! The bar measures planned measurement time (what the scenario knows in
//! advance) and names the step in progress. It is drawn on stderr only when
//! stderr is a terminal, so logs and CI output stay clean.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// The bar of one scenario run.
pub struct Progress {
    bar: ProgressBar,
    /// Planned time of the steps already finished, in ms.
    done_ms: u64,
}

impl Progress {
    /// A bar for `planned` total measurement time.
    pub fn new(planned: Duration) -> Progress {
        let bar = ProgressBar::new(millis(planned).max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, done_ms: 0 }
    }

    /// Runs `work`, a step planned to take `planned`, showing `label` and
    /// advancing the bar with the clock while it runs.
    pub async fn step<T>(
        &mut self,
        label: impl Into<String>,
        planned: Duration,
        work: impl Future<Output = T>,
    ) -> T {
        self.bar.set_message(label.into());
        let started = Instant::now();
        let base = self.done_ms;
        let planned_ms = millis(planned);
        let bar = self.bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.set_position(base + millis(started.elapsed()).min(planned_ms));
            }
        });
        let output = work.await;
        ticker.abort();
        self.done_ms += planned_ms;
        self.bar.set_position(self.done_ms);
        output
    }

    /// Shows `text` above the bar (a finished step's result, a warning).
    pub fn println(&self, text: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", text.as_ref());
        } else {
            self.bar.println(text.as_ref());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
