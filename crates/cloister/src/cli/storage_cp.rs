//! `cloister storage cp [-r] SOURCE… DESTINATION`: local → gs://, gs:// → local (or `-` for
//! stdout), gs:// → gs:// (a server-side rewrite, no bytes through the client), stdin (`-`)
//! → gs://. Sources may be wildcards; several sources go into DESTINATION as a folder. Large uploads
//! use the resumable protocol, so a dropped connection resumes instead of starting over;
//! transfers show a progress bar when stderr is a terminal.
//!
//! Recursive copies copy the folder itself into the destination, as gsutil does:
//! `cp -r models gs://b/x` gives `gs://b/x/models/…`; `cp -r gs://b/x/models out` gives
//! `out/models/…`. Every object name is checked before anything is written, so a bucket
//! holding a name like `../../etc/passwd` cannot make a download write outside the destination.

use std::io::IsTerminal as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_client::{ApiClient, Progress};
use serde_json::json;

use super::storage::{object_path, parse_gs};
use super::storage_glob::{expand, has_wildcard, local};

/// Files at least this large go up with the resumable protocol (gsutil's threshold).
const RESUMABLE_THRESHOLD: u64 = 8 * 1024 * 1024;
/// Bytes per resumable chunk: what is resent after a failure.
const RESUMABLE_CHUNK: u64 = 32 * 1024 * 1024;
/// Transfers smaller than this get no progress bar.
const PROGRESS_MIN: u64 = 4 * 1024 * 1024;

const LOCAL_ONLY: &str = "cp copies to or from gs://: at least one side must be gs://BUCKET[/OBJECT]; use your shell's cp for local copies";

/// One thing to copy, after wildcards are expanded.
enum Source {
    /// A local file, or a directory (copied whole with -r).
    Local(PathBuf),
    /// Standard input (`-`).
    Stdin,
    /// An object; with -r also the folder of the same name.
    Object { bucket: String, name: String },
    /// A folder matched by a wildcard (`gs://b/dir/*` matching `dir/sub/`).
    Folder { bucket: String, prefix: String },
}

pub async fn cp(
    client: &ApiClient,
    sources: &[String],
    destination: &str,
    recursive: bool,
) -> Result<()> {
    let mut expanded = Vec::new();
    let mut wildcards = false;
    for source in sources {
        if source == "-" {
            expanded.push(Source::Stdin);
        } else if source.starts_with("gs://") {
            let (bucket, name) = parse_gs(source)?;
            if !has_wildcard(&name) {
                expanded.push(Source::Object { bucket, name });
                continue;
            }
            wildcards = true;
            let matches = expand(client, &bucket, &name).await?;
            if matches.objects.is_empty() && matches.folders.is_empty() {
                bail!("{source} matched no objects");
            }
            for o in &matches.objects {
                let name = o["name"].as_str().unwrap_or_default().to_owned();
                expanded.push(Source::Object {
                    bucket: bucket.clone(),
                    name,
                });
            }
            for prefix in matches.folders {
                expanded.push(Source::Folder {
                    bucket: bucket.clone(),
                    prefix,
                });
            }
        } else {
            wildcards |= has_wildcard(source);
            expanded.extend(local(source)?.into_iter().map(Source::Local));
        }
    }
    // Several sources, or a wildcard, always copy into DESTINATION as a folder.
    let into_folder = wildcards || expanded.len() > 1;
    if into_folder && !destination.starts_with("gs://") && !Path::new(destination).is_dir() {
        bail!(
            "copying several sources needs an existing directory or a gs:// folder as the destination; {destination} is not a directory"
        );
    }
    for source in expanded {
        copy_one(client, source, destination, recursive, into_folder).await?;
    }
    Ok(())
}

async fn copy_one(
    client: &ApiClient,
    source: Source,
    destination: &str,
    recursive: bool,
    into_folder: bool,
) -> Result<()> {
    let to_gs = destination.starts_with("gs://");
    match source {
        Source::Folder { bucket, prefix } if !recursive => {
            eprintln!("Omitting folder gs://{bucket}/{prefix} (cp -r copies what is in it).");
            Ok(())
        }
        Source::Folder { bucket, prefix }
        | Source::Object {
            bucket,
            name: prefix,
        } if recursive && prefix_is_folder(client, &bucket, &prefix).await? => {
            if to_gs {
                let (dest_bucket, dest) = parse_gs(destination)?;
                let into = format!("{}{}/", folder(&dest), folder_name(&bucket, &prefix));
                for (object, rel) in folder_objects(client, &bucket, &prefix).await? {
                    rewrite(
                        client,
                        &bucket,
                        &object,
                        &dest_bucket,
                        &format!("{into}{rel}"),
                    )
                    .await?;
                }
                Ok(())
            } else {
                download_folder(client, &bucket, &prefix, destination).await
            }
        }
        Source::Folder { bucket, prefix } => {
            bail!("gs://{bucket}/{prefix} holds no objects to copy")
        }
        Source::Object { bucket, name } if to_gs => {
            let (dest_bucket, dest) = parse_gs(destination)?;
            let dest = if into_folder || dest.is_empty() || dest.ends_with('/') {
                format!(
                    "{}{}",
                    folder(&dest),
                    name.rsplit('/').next().unwrap_or(&name)
                )
            } else {
                dest
            };
            rewrite(client, &bucket, &name, &dest_bucket, &dest).await
        }
        Source::Object { bucket, name } => download(client, &bucket, &name, destination).await,
        Source::Stdin => {
            if !to_gs {
                bail!("{LOCAL_ONLY}");
            }
            let (bucket, object) = parse_gs(destination)?;
            if into_folder || object.is_empty() || object.ends_with('/') {
                bail!(
                    "copying from - needs the object's full name as the destination: gs://{bucket}/NAME"
                );
            }
            require_create(client, &bucket).await?;
            // Spooled to a temporary file, so large input goes up resumably like a file.
            let mut spool = tempfile::NamedTempFile::new()?;
            std::io::copy(&mut std::io::stdin().lock(), spool.as_file_mut())
                .context("reading standard input")?;
            upload(client, spool.path(), &bucket, &object).await
        }
        Source::Local(file) => {
            if !to_gs {
                bail!("{LOCAL_ONLY}");
            }
            let (bucket, prefix) = parse_gs(destination)?;
            if file.is_dir() {
                if !recursive {
                    bail!("{} is a directory: copy it with -r", file.display());
                }
                require_create(client, &bucket).await?;
                for (path, rel) in local_files(&file)? {
                    let object = format!("{}{rel}", folder(&prefix));
                    upload(client, &path, &bucket, &object).await?;
                }
                return Ok(());
            }
            require_create(client, &bucket).await?;
            let object = if into_folder || prefix.is_empty() || prefix.ends_with('/') {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the source has no file name")?;
                format!("{}{name}", folder(&prefix))
            } else {
                prefix
            };
            upload(client, &file, &bucket, &object).await
        }
    }
}

/// Whether `gs://bucket/prefix/` holds objects (so `cp -r` copies it as a folder).
async fn prefix_is_folder(client: &ApiClient, bucket: &str, prefix: &str) -> Result<bool> {
    let page = client
        .get_query(
            &format!("/storage/v1/b/{bucket}/o"),
            &[("prefix", folder(prefix)), ("maxResults", "1".to_owned())],
        )
        .await?;
    Ok(page["items"].as_array().is_some_and(|i| !i.is_empty()))
}

/// `cp -r gs://b/x/models out` gives `out/models/…`; every name is checked before anything
/// is written.
async fn download_folder(
    client: &ApiClient,
    bucket: &str,
    name: &str,
    destination: &str,
) -> Result<()> {
    if destination == "-" {
        bail!("a recursive copy needs a directory as its destination, not -");
    }
    let objects = folder_objects(client, bucket, name).await?;
    let base = Path::new(destination).join(folder_name(bucket, name));
    let mut plan = Vec::new();
    for (object, rel) in objects {
        plan.push((object, base.join(safe_relative_path(&rel)?)));
    }
    for (object, path) in plan {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        download(client, bucket, &object, &path.to_string_lossy()).await?;
    }
    Ok(())
}

/// Asks first: a refused upload would otherwise surface as a broken connection once the
/// server answers before reading the whole file.
async fn require_create(client: &ApiClient, bucket: &str) -> Result<()> {
    let held = client
        .get_query(
            &format!("/storage/v1/b/{bucket}/iam/testPermissions"),
            &[("permissions", "storage.objects.create".to_owned())],
        )
        .await?;
    if !held["permissions"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p == "storage.objects.create"))
    {
        bail!(
            "PERMISSION_DENIED: you lack storage.objects.create on gs://{bucket}; ask its owner for roles/storage.objectCreator or objectUser"
        );
    }
    Ok(())
}

async fn upload(client: &ApiClient, file: &Path, bucket: &str, object: &str) -> Result<()> {
    let len = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let (progress, bar) = progress_bar(len, object);
    let path = format!("/upload/storage/v1/b/{bucket}/o");
    let query = [("name", object.to_owned())];
    let o = if len >= RESUMABLE_THRESHOLD {
        client
            .upload_file_resumable(
                &path,
                &query,
                file,
                content_type(file),
                RESUMABLE_CHUNK,
                &progress,
            )
            .await
    } else {
        let query = [query[0].clone(), ("uploadType", "media".to_owned())];
        client
            .upload_file(&path, &query, file, content_type(file), &progress)
            .await
    };
    finish(bar);
    let o = o?;
    eprintln!(
        "Copied {} to gs://{bucket}/{object} ({} bytes).",
        file.display(),
        o["size"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn download(client: &ApiClient, bucket: &str, object: &str, destination: &str) -> Result<()> {
    let path = object_path(bucket, object);
    let query = [("alt", "media".to_owned())];
    if destination == "-" {
        client
            .download(
                &path,
                &query,
                &mut tokio::io::stdout(),
                &Progress::default(),
            )
            .await?;
        return Ok(());
    }
    let size = client.get(&path).await?["size"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let destination = match tokio::fs::metadata(destination).await {
        Ok(m) if m.is_dir() => {
            Path::new(destination).join(object.rsplit('/').next().unwrap_or(object))
        }
        _ => PathBuf::from(destination),
    };
    // Into a temporary file first, so a failed download leaves no partial file.
    let tmp = PathBuf::from(format!("{}.cloister-download", destination.display()));
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let (progress, bar) = progress_bar(size, object);
    let result = client.download(&path, &query, &mut file, &progress).await;
    finish(bar);
    match result {
        Ok(n) => {
            tokio::fs::rename(&tmp, &destination).await?;
            eprintln!(
                "Copied gs://{bucket}/{object} to {} ({n} bytes).",
                destination.display()
            );
            Ok(())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e.into())
        }
    }
}

async fn rewrite(
    client: &ApiClient,
    bucket: &str,
    object: &str,
    dest_bucket: &str,
    dest: &str,
) -> Result<()> {
    let path = format!(
        "{}/rewriteTo{}",
        object_path(bucket, object),
        object_path(dest_bucket, dest).trim_start_matches("/storage/v1")
    );
    let r = client.post(&path, &json!({})).await?;
    eprintln!(
        "Copied gs://{bucket}/{object} to gs://{dest_bucket}/{dest} ({} bytes).",
        r["objectSize"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// The objects under `gs://bucket/name/`, each with its name relative to that folder.
async fn folder_objects(
    client: &ApiClient,
    bucket: &str,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let prefix = folder(name);
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("prefix", prefix.clone())];
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let page = client
            .get_query(&format!("/storage/v1/b/{bucket}/o"), &q)
            .await?;
        for o in page["items"].as_array().into_iter().flatten() {
            let object = o["name"].as_str().unwrap_or_default();
            // Names ending in '/' are the console's folder placeholders, not files.
            if let Some(rel) = object
                .strip_prefix(&prefix)
                .filter(|r| !r.is_empty() && !r.ends_with('/'))
            {
                found.push((object.to_owned(), rel.to_owned()));
            }
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    if found.is_empty() {
        bail!("gs://{bucket}/{prefix} holds no objects to copy");
    }
    Ok(found)
}

/// `prefix` as a folder: empty stays empty (the bucket's root), otherwise ends with '/'.
fn folder(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    }
}

/// The folder's own name, which a recursive copy recreates at the destination.
fn folder_name<'a>(bucket: &'a str, name: &'a str) -> &'a str {
    name.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(bucket)
}

/// An object name as a path below a directory; refuses names that would escape it.
fn safe_relative_path(rel: &str) -> Result<PathBuf> {
    let path = Path::new(rel);
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            _ => bail!(
                "refusing to download the object name {rel:?}: it would write outside the destination directory (nothing was copied)"
            ),
        }
    }
    if out.as_os_str().is_empty() {
        bail!("the object name {rel:?} names no file");
    }
    Ok(out)
}

/// Regular files below `dir`, each with `DIR_NAME/relative/path` as its object suffix.
fn local_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let base = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let name = base
        .file_name()
        .and_then(|n| n.to_str())
        .context("the source directory has no name")?
        .to_owned();
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&base).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&base)
            .context("walked outside the source directory")?;
        let rel = rel.to_str().with_context(|| {
            format!("{} is not UTF-8, which object names must be", rel.display())
        })?;
        files.push((entry.path().to_owned(), format!("{name}/{rel}")));
    }
    Ok(files)
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn progress_bar(len: u64, label: &str) -> (Progress, Option<indicatif::ProgressBar>) {
    if len < PROGRESS_MIN || !std::io::stderr().is_terminal() {
        return (Progress::default(), None);
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    let shown = bar.clone();
    (
        Progress::new(move |done| shown.set_position(done)),
        Some(bar),
    )
}

fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_that_escape_the_destination_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "./", "a/./.."] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            safe_relative_path("a/b.txt").unwrap(),
            PathBuf::from("a/b.txt")
        );
    }

    #[test]
    fn a_folder_copy_keeps_the_folder_name() {
        assert_eq!(folder_name("b", "x/models"), "models");
        assert_eq!(folder_name("b", "x/models/"), "models");
        assert_eq!(folder_name("b", ""), "b");
        assert_eq!(folder(""), "");
        assert_eq!(folder("x"), "x/");
    }
}
