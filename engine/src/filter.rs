//! Include and exclude patterns, as restic users write them: `*` and `?` within one path component,
//! `**` across components, `[...]` classes. A pattern starting with `/` is anchored at the root;
//! any other pattern matches at any depth (`*.tmp` excludes every `.tmp` file). A pattern starting
//! with `!` re-includes what an earlier pattern excluded.
//!
//! Paths are matched as the bytes they are, so a name that is not UTF-8 is neither skipped nor
//! confused with the UTF-8 name it would print as; patterns themselves are UTF-8.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    negated: bool,
}

/// A list of patterns; the last one that matches a path decides.
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    rules: Vec<Rule>,
}

impl PatternSet {
    /// Compiles patterns; blank lines and `#` comments are skipped.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut set = Self::default();
        set.add(patterns, false)?;
        Ok(set)
    }

    /// Adds patterns after those already in the set; with `case_insensitive`, they match names in
    /// any case (restic's `--iexclude`).
    pub fn add<S: AsRef<str>>(&mut self, patterns: &[S], case_insensitive: bool) -> Result<()> {
        let rules = &mut self.rules;
        for p in patterns {
            let p = p.as_ref().trim_end_matches(['\r', '\n']);
            if p.trim().is_empty() || p.starts_with('#') {
                continue;
            }
            let (negated, body) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            let body = body.trim_end_matches('/');
            let glob = if body.starts_with('/') { body.to_owned() } else { format!("**/{body}") };
            let matcher = GlobBuilder::new(&glob)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| Error::invalid(format!("pattern '{p}': {e}")))?
                .compile_matcher();
            rules.push(Rule { matcher, negated });
        }
        Ok(())
    }

    /// Reads patterns from files, one per line.
    pub fn from_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
            out.extend(text.lines().map(str::to_owned));
        }
        Ok(out)
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (absolute, `/`-separated) matches: the last matching rule decides.
    pub fn matches(&self, path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        let mut hit = false;
        for r in &self.rules {
            if r.matcher.is_match(path) {
                hit = !r.negated;
            }
        }
        hit
    }

    /// Whether `path` or any of its parent folders matches (for include lists on restore).
    pub fn matches_or_under(&self, path: impl AsRef<Path>) -> bool {
        // The root itself is never matched on its own behalf.
        path.as_ref().ancestors().filter(|p| p.parent().is_some()).any(|p| self.matches(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_like_patterns() {
        let s = PatternSet::new(&["*.tmp", "/var/cache", "**/node_modules", "!keep.tmp"]).expect("valid");
        assert!(s.matches("/home/a/b.tmp"));
        assert!(s.matches("/x.tmp"));
        assert!(!s.matches("/home/a/keep.tmp"));
        assert!(s.matches("/var/cache"));
        assert!(!s.matches("/srv/var/cache"));
        assert!(s.matches("/srv/app/node_modules"));
        assert!(!s.matches("/home/a/b.txt"));
        assert!(s.matches_or_under("/var/cache/x/y"));
        assert!(!s.matches_or_under("/var/x/y"));
    }

    #[test]
    fn case_insensitive_patterns_match_any_case() {
        let mut s = PatternSet::new(&["*.tmp"]).expect("valid");
        s.add(&["*.LOG", "/Var/Cache"], true).expect("valid");
        assert!(s.matches("/a/x.log"));
        assert!(s.matches("/a/X.Log"));
        assert!(s.matches("/var/cache"));
        assert!(!s.matches("/a/x.TMP"), "--exclude stays case-sensitive");
    }

    #[test]
    fn names_that_are_not_utf8_match_as_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = |b: &[u8]| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b));
        let s = PatternSet::new(&["*.tmp", "caf\u{fffd}"]).expect("valid");
        assert!(s.matches(latin1(b"/home/x\xe9.tmp")));
        assert!(s.matches("/home/caf\u{fffd}"));
        // Printed lossily, the name looks like the pattern; it is not the same name.
        assert!(!s.matches(latin1(b"/home/caf\xe9")));
    }
}
