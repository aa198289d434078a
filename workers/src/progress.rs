//! The progress bar shown while a model's layers load (vLLM shows one too):
//! one place for its look, used by the worker's rank 0 and by
//! `engine generate`. indicatif draws nothing when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A layer-count progress bar, or nothing when hidden.
pub struct LoadProgress(Option<ProgressBar>);

impl LoadProgress {
    /// A bar labelled `name`, drawn only if `visible`.
    pub fn new(name: &str, visible: bool) -> Self {
        Self(visible.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} layers")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(name.to_string());
            bar
        }))
    }

    /// `done` of `total` layers are loaded (the loader's callback).
    pub fn update(&self, done: usize, total: usize) {
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
