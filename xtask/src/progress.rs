//! What a long command shows while it works, on standard error: on a terminal one line per app
//! (its current step) with a bar per blob in flight; elsewhere plain `app: step` lines; in GitHub
//! Actions the same lines, each app's push folded into a `::group::` section (written whole when
//! the push ends, since apps push side by side and sections cannot interleave).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Terminal,
    Plain,
    GitHubActions,
}

#[derive(Clone)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl Progress {
    /// Bars on a terminal, `::group::` sections when `GITHUB_ACTIONS` is set, plain lines
    /// otherwise. With `json`, standard output is for the summary alone and standard error gets
    /// plain lines, never bars.
    pub fn new(json: bool) -> Progress {
        let mode = if std::env::var_os("GITHUB_ACTIONS").is_some_and(|value| value == "true") {
            Mode::GitHubActions
        } else if !json && std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        };
        Progress::with_mode(mode)
    }

    fn with_mode(mode: Mode) -> Progress {
        let target = if mode == Mode::Terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { mode, multi: MultiProgress::with_draw_target(target) }
    }

    /// The line of one app, which each `step` replaces.
    pub fn app(&self, name: &str) -> AppLine {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{prefix:>12.bold} {msg}").expect("valid template"));
        bar.set_prefix(name.to_string());
        AppLine { name: name.to_string(), mode: self.mode, bar, group: None }
    }

    /// Runs `f` as one folded section in GitHub Actions (for output of other programs, such as
    /// cargo's), and as is elsewhere.
    pub fn section<T>(&self, title: &str, f: impl FnOnce() -> T) -> T {
        if self.mode != Mode::GitHubActions {
            return f();
        }
        eprintln!("::group::{title}");
        let result = f();
        eprintln!("::endgroup::");
        result
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

/// One app's line: `detect → build → push → tag`.
pub struct AppLine {
    name: String,
    mode: Mode,
    bar: ProgressBar,
    /// The open `::group::` of this app: its title and the lines it holds so far.
    group: Option<(String, Mutex<Vec<String>>)>,
}

impl AppLine {
    pub fn step(&self, message: &str) {
        match (self.mode, &self.group) {
            (Mode::Terminal, _) => self.bar.set_message(message.to_string()),
            (_, Some((_, lines))) => {
                lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(format!("{}: {message}", self.name))
            }
            (Mode::Plain | Mode::GitHubActions, None) => eprintln!("{}: {message}", self.name),
        }
    }

    /// Opens the app's folded section in GitHub Actions; it is written when the line finishes.
    pub fn begin_group(&mut self, title: &str) {
        if self.mode == Mode::GitHubActions && self.group.is_none() {
            self.group = Some((format!("{}: {title}", self.name), Mutex::new(Vec::new())));
        }
    }

    /// The last step: the line stays on a terminal with `message`.
    pub fn finish(mut self, message: &str) {
        self.close_group();
        match self.mode {
            Mode::Terminal => self.bar.finish_with_message(message.to_string()),
            Mode::Plain | Mode::GitHubActions => eprintln!("{}: {message}", self.name),
        }
    }

    fn close_group(&mut self) {
        if let Some((title, lines)) = self.group.take() {
            let lines = lines.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
            // One write, so that another app's section cannot land inside it.
            eprint!("::group::{title}\n{}::endgroup::\n", lines.iter().map(|line| format!("{line}\n")).collect::<String>());
        }
    }
}

impl Drop for AppLine {
    /// A line dropped on an error path still closes its section.
    fn drop(&mut self) {
        self.close_group();
    }
}

/// `text` with every control character (newlines, carriage returns, escapes, tabs included)
/// written as a Rust escape (`\n`, `\u{1b}`), so that what a server chose cannot start a line,
/// move the cursor or speak to a CI runner.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
