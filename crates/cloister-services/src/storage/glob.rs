//! `matchGlob` on objects.list. Matching is the `globset` crate's, configured for Cloud
//! Storage's semantics: `*` and `?` stay within one `/`-separated segment, `**` as a whole
//! segment (`a/**/b`, `**/x`, `a/**`) spans any number of segments including none, `[abc]`,
//! `[a-z]` and `[!abc]` are classes, `{a,b}` alternatives, and `\` escapes. (A `**` inside a
//! segment, as in `a**`, is a `*` there, as gcloud documents for its own wildcards.)

use globset::{GlobBuilder, GlobMatcher};

use crate::error::ApiError;

/// Longest pattern accepted: Google's object names are at most 1024 bytes.
const MAX_PATTERN_BYTES: usize = 1024;

pub struct MatchGlob {
    matcher: GlobMatcher,
    /// What every matching name starts with: the pattern up to its first special character,
    /// so the listing can skip what sorts outside it.
    literal_prefix: String,
}

impl MatchGlob {
    pub fn new(pattern: &str) -> Result<MatchGlob, ApiError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "The glob pattern in matchGlob is longer than {MAX_PATTERN_BYTES} bytes"
            )));
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "Invalid glob pattern {pattern:?} in matchGlob: {}. Special characters are \
                     * ** ? [..] {{a,b}}; escape one with \\ to match it literally",
                    e.kind()
                ))
            })?;
        let literal_prefix = pattern
            .split(['*', '?', '[', '{', '\\'])
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(MatchGlob {
            matcher: glob.compile_matcher(),
            literal_prefix,
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }

    pub fn literal_prefix(&self) -> &str {
        &self.literal_prefix
    }
}

#[cfg(test)]
mod tests {
    use super::MatchGlob;

    #[test]
    fn patterns_match_like_cloud_storage() {
        let names = [
            "a.txt",
            "b.txt",
            "a.csv",
            "dir/a.txt",
            "dir/sub/a.txt",
            "dir/sub/b.jpg",
            "dir.txt",
            "x/y",
            "[lit]",
        ];
        for (pattern, expected) in [
            ("*.txt", vec!["a.txt", "b.txt", "dir.txt"]),
            ("**.txt", vec!["a.txt", "b.txt", "dir.txt"]),
            (
                "**/*.txt",
                vec!["a.txt", "b.txt", "dir/a.txt", "dir/sub/a.txt", "dir.txt"],
            ),
            (
                "dir/**",
                vec!["dir/a.txt", "dir/sub/a.txt", "dir/sub/b.jpg"],
            ),
            ("dir/**/a.txt", vec!["dir/a.txt", "dir/sub/a.txt"]),
            ("dir/*", vec!["dir/a.txt"]),
            ("?.txt", vec!["a.txt", "b.txt"]),
            ("[ab].txt", vec!["a.txt", "b.txt"]),
            ("[!a].txt", vec!["b.txt"]),
            ("[a-b].csv", vec!["a.csv"]),
            ("a.{txt,csv}", vec!["a.txt", "a.csv"]),
            (
                "{dir/sub/*,x/?}",
                vec!["dir/sub/a.txt", "dir/sub/b.jpg", "x/y"],
            ),
            ("x?y", vec![]),
            ("\\[lit\\]", vec!["[lit]"]),
            ("a.txt", vec!["a.txt"]),
        ] {
            let g = MatchGlob::new(pattern).unwrap();
            let got: Vec<&str> = names.iter().copied().filter(|n| g.is_match(n)).collect();
            assert_eq!(got, expected, "{pattern}");
        }
        assert_eq!(
            MatchGlob::new("dir/sub/*.txt").unwrap().literal_prefix(),
            "dir/sub/"
        );
        assert_eq!(MatchGlob::new("**").unwrap().literal_prefix(), "");
    }

    #[test]
    fn malformed_patterns_are_refused_naming_matchglob() {
        for bad in ["[abc", "a{b,c", "[z-a]"] {
            let e = MatchGlob::new(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("matchGlob")),
                "{bad}: {e:?}"
            );
        }
        assert!(MatchGlob::new(&"a".repeat(1025)).is_err());
    }
}
