//! Progress for long runs (`bench`, `demo -f` with many objects, `cost` over many volumes): a bar on stderr when stderr is
//! a terminal, nothing at all when it is piped or redirected, so logs and scripts see only the
//! results.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One phase of a long run, `len` steps long.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar titled `what`; hidden unless stderr is a terminal.
    pub fn new(what: &str, len: u64) -> Self {
        Self::to(what, len, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], drawn or not as asked (tests and callers that know better).
    pub fn to(what: &str, len: u64, visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        // The template is a constant; should indicatif ever refuse it, the default style serves.
        if let Ok(style) = ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos:>6}/{len:<6} {elapsed}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Progress { bar }
    }

    /// A run whose length is not known ahead: a spinner with the count of `unit` done.
    pub fn steps(what: &str, unit: &str) -> Self {
        let visible = std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let template = format!("{{spinner}} {{prefix}} {{pos}} {unit}, {{elapsed}}: {{wide_msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress { bar }
    }

    /// Runs `print` with the bar lifted off the terminal, so lines printed meanwhile stay whole.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bar.suspend(print)
    }

    pub fn step(&self) {
        self.bar.inc(1);
    }

    pub fn advance(&self, steps: u64) {
        self.bar.inc(steps);
    }

    /// Names what is happening now, within the phase.
    pub fn say(&self, what: impl Into<String>) {
        self.bar.set_message(what.into());
    }

    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }
}

impl Drop for Progress {
    /// The bar leaves the terminal when its phase ends; the results print after it.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
