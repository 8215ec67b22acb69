//! Wildcards in storage URLs, as gcloud storage and gsutil expand them: `*` and `?` within
//! one level of names, `**` across levels, `[abc]` character sets. `gs://b/dir/*` matches the
//! objects directly in `dir/` and the folders (`dir/sub/`) there; local wildcards match files
//! and directories the shell did not expand (a quoted `'images/*'`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use cloister_client::ApiClient;
use serde_json::Value;

pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `*` stays within one level of names, as in a path.
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// What a `gs://` wildcard matched: objects (their metadata) and folders (`dir/sub/`).
#[derive(Debug, Default)]
pub struct Matches {
    pub objects: Vec<Value>,
    pub folders: Vec<String>,
}

/// Every object of `bucket` whose name starts with `prefix`, following the pages.
pub async fn list_objects(client: &ApiClient, bucket: &str, prefix: &str) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("prefix", prefix.to_owned())];
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let page = client
            .get_query(&format!("/storage/v1/b/{bucket}/o"), &q)
            .await?;
        found.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(found),
        }
    }
}

/// The objects and folders of `bucket` that `pattern` (an object name with wildcards) matches.
pub async fn expand(client: &ApiClient, bucket: &str, pattern: &str) -> Result<Matches> {
    let compiled = glob::Pattern::new(pattern)
        .with_context(|| format!("gs://{bucket}/{pattern} is not a valid wildcard"))?;
    // Only names that start with the text before the first wildcard can match.
    let literal = &pattern[..pattern.find(['*', '?', '[']).unwrap_or(pattern.len())];
    let mut matches = Matches::default();
    let mut folders = BTreeSet::new();
    for object in list_objects(client, bucket, literal).await? {
        let name = object["name"].as_str().unwrap_or_default();
        if compiled.matches_with(name, MATCH) {
            matches.objects.push(object);
            continue;
        }
        // The shallowest folder above the object that the pattern names.
        let folder = name
            .match_indices('/')
            .map(|(i, _)| i)
            .filter(|i| *i >= literal.len())
            .find(|i| compiled.matches_with(&name[..*i], MATCH));
        if let Some(i) = folder {
            folders.insert(name[..=i].to_owned());
        }
    }
    matches.folders = folders.into_iter().collect();
    Ok(matches)
}

/// A local path, or the files and directories its wildcard matches (sorted).
pub fn local(pattern: &str) -> Result<Vec<PathBuf>> {
    if !has_wildcard(pattern) {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let mut paths = Vec::new();
    for entry in glob::glob_with(pattern, MATCH)
        .with_context(|| format!("{pattern} is not a valid wildcard"))?
    {
        paths.push(entry.with_context(|| format!("reading what {pattern} matches"))?);
    }
    if paths.is_empty() {
        bail!("{pattern} matched no files");
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_wildcards_match_one_level_and_refuse_no_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images/night")).unwrap();
        for f in ["images/a.jpg", "images/b.png", "images/night/c.jpg"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let base = dir.path().join("images");
        let names = |pattern: &str| -> Vec<String> {
            local(&format!("{}/{pattern}", base.display()))
                .unwrap()
                .iter()
                .map(|p| p.strip_prefix(&base).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names("*"), ["a.jpg", "b.png", "night"]);
        assert_eq!(names("*.jpg"), ["a.jpg"]);
        assert_eq!(names("**/*.jpg"), ["a.jpg", "night/c.jpg"]);
        let err = local(&format!("{}/*.gif", base.display())).unwrap_err();
        assert!(err.to_string().contains("matched no files"), "{err}");
    }
}
