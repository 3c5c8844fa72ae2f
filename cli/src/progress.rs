//! Progress bars on a terminal; nothing but warnings otherwise (cron mails stay empty).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_engine::progress::{ItemAction, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;

/// Renders engine progress.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// `-v` count: from 1, each item processed is listed (and notes such as the parent used).
    verbose: u8,
    /// `--json`: items listed with `-v` are restic's `verbose_status` lines.
    json: bool,
    /// restic's `status` lines of `backup --json`, when asked for.
    status: Option<Mutex<StatusLines>>,
}

/// The counters behind restic's `{"message_type":"status",...}` lines, and when one was last printed.
struct StatusLines {
    interval: Duration,
    started: Instant,
    last: Option<Instant>,
    total_files: u64,
    total_bytes: u64,
    files_done: u64,
    bytes_done: u64,
    current: String,
}

impl StatusLines {
    fn line(&self) -> serde_json::Value {
        let percent_done =
            if self.total_bytes == 0 { 0.0 } else { (self.bytes_done as f64 / self.total_bytes as f64).min(1.0) };
        serde_json::json!({
            "message_type": "status",
            "seconds_elapsed": self.started.elapsed().as_secs(),
            "percent_done": percent_done,
            "total_files": self.total_files,
            "files_done": self.files_done,
            "total_bytes": self.total_bytes,
            "bytes_done": self.bytes_done,
            "current_files": if self.current.is_empty() { vec![] } else { vec![self.current.clone()] },
        })
    }

    /// Prints a line when the interval has passed since the last one.
    fn tick(&mut self) {
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= self.interval) {
            self.last = Some(now);
            // A closed output is noticed by the final summary's write.
            let _ = output::json(&self.line());
        }
    }
}

/// How often `backup --json` prints a status line: `CAIRN_PROGRESS_FPS` lines per second (as
/// restic's `RESTIC_PROGRESS_FPS`), or none when unset, so that scripts reading the summary get one
/// JSON document by default.
fn status_interval() -> Option<Duration> {
    let fps: f64 = std::env::var("CAIRN_PROGRESS_FPS").ok()?.trim().parse().ok()?;
    (fps > 0.0 && fps.is_finite()).then(|| Duration::from_secs_f64((1.0 / fps).min(3600.0)))
}

impl Bar {
    /// A bar when standard error is a terminal and output is neither quiet nor JSON.
    pub fn new(enabled: bool, verb: &str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { bar: None, verbose: 0, json: false, status: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
        let style = ProgressStyle::with_template(&format!(
            "{verb} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} {{wide_msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar), verbose: 0, json: false, status: None }
    }

    /// Lists items (`-v`) and, for `backup --json` with `CAIRN_PROGRESS_FPS` set, prints restic's
    /// status lines.
    pub fn with_output(mut self, global: &crate::GlobalArgs, status_lines: bool) -> Self {
        self.verbose = if global.quiet { 0 } else { global.verbose };
        self.json = global.json;
        if status_lines && global.json && !global.quiet {
            self.status = status_interval().map(|interval| {
                Mutex::new(StatusLines {
                    interval,
                    started: Instant::now(),
                    last: None,
                    total_files: 0,
                    total_bytes: 0,
                    files_done: 0,
                    bytes_done: 0,
                    current: String::new(),
                })
            });
        }
        self
    }

    /// Prints a line to standard output without tearing the bar.
    fn print(&self, line: &str) {
        let print = || {
            let _ = output::line(line);
        };
        match &self.bar {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    /// The last status line (100% when the backup finished), before the summary.
    pub fn final_status(&self) {
        if let Some(status) = &self.status
            && let Ok(mut s) = status.lock()
        {
            s.bytes_done = s.bytes_done.max(s.total_bytes);
            s.total_bytes = s.bytes_done;
            s.total_files = s.total_files.max(s.files_done);
            s.current.clear();
            let _ = output::json(&s.line());
        }
    }

    fn with_status(&self, f: impl FnOnce(&mut StatusLines)) {
        if let Some(status) = &self.status
            && let Ok(mut s) = status.lock()
        {
            f(&mut s);
            s.tick();
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn wants_total(&self) -> bool {
        self.bar.is_some() || self.status.is_some()
    }
    fn set_total(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_length(bytes);
        }
        self.with_status(|s| s.total_bytes = bytes);
    }
    fn set_total_files(&self, files: u64) {
        self.with_status(|s| s.total_files = files);
    }
    fn add_bytes(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
        self.with_status(|s| s.bytes_done += bytes);
    }
    fn set_current(&self, path: &Path) {
        if let Some(b) = &self.bar {
            b.set_message(path.display().to_string());
        }
        self.with_status(|s| s.current = path.display().to_string());
    }
    fn item_done(&self, path: &Path, action: ItemAction, size: u64) {
        self.with_status(|s| s.files_done += 1);
        if self.verbose == 0 {
            return;
        }
        let item = path.to_string_lossy();
        if self.json {
            // restic's `backup --json -v` line; `restore` uses the same shape.
            let line = serde_json::json!({
                "message_type": "verbose_status",
                "action": action.as_str(),
                "item": item,
                "data_size": size,
            });
            self.print(&line.to_string());
        } else {
            self.print(&format!("{:<10} {}", action.as_str(), output::quote(&item)));
        }
    }
    fn note(&self, message: &str) {
        if self.verbose > 0 && !self.json {
            self.print(message);
        }
    }
    fn warn(&self, message: &str) {
        crate::log::warn(message);
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}
