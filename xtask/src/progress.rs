//! Upload progress: a bar per blob in flight and a total, drawn only on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars appear only when standard error is a terminal and the output is not JSON.
    pub fn new(json: bool) -> Progress {
        let target = if !json && std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { multi: MultiProgress::with_draw_target(target) }
    }

    pub fn total(&self, bytes: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("total");
        bar
    }

    /// A bar for one blob; the returned callback counts bytes into it and into `total`.
    pub fn blob(&self, name: &str, bytes: u64, total: &ProgressBar) -> (ProgressBar, Arc<dyn Fn(u64) + Send + Sync>) {
        let bar = self.multi.add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes}").expect("valid template").progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        let (blob, total) = (bar.clone(), total.clone());
        (
            bar,
            Arc::new(move |n| {
                blob.inc(n);
                total.inc(n);
            }),
        )
    }
}
