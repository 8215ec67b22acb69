//! `cloister storage ls [-r] [-l]` and `storage rm [-r]`, with gsutil's URL semantics:
//! `gs://b/dir` is the object `dir` and the folder `dir/`; wildcards expand as in
//! [`super::storage_glob`]; `rm -r gs://b` empties the bucket and deletes it.

use anyhow::{Result, bail};
use cloister_client::ApiClient;
use serde_json::{Value, json};

use super::format::{Format, Kind, ListArgs, default_columns, print_list};
use super::output;
use super::storage::{object_path, parse_gs};
use super::storage_glob::{expand, has_wildcard, list_objects};

const COLUMNS: &[(&str, &str)] = &[("SIZE", "size"), ("UPDATED", "updated"), ("URL", "url")];

fn object_row(bucket: &str, o: &Value) -> Value {
    json!({
        "url": format!("gs://{bucket}/{}", o["name"].as_str().unwrap_or_default()),
        "name": o["name"],
        "size": o["size"],
        "updated": o["updated"],
    })
}

fn folder_row(bucket: &str, folder: &str) -> Value {
    json!({"url": format!("gs://{bucket}/{folder}"), "name": folder, "size": "", "updated": ""})
}

/// One level under `prefix` (objects and folders), or everything below it with `recursive`.
async fn level(
    client: &ApiClient,
    bucket: &str,
    prefix: &str,
    recursive: bool,
) -> Result<Vec<Value>> {
    if recursive {
        let objects = list_objects(client, bucket, prefix).await?;
        return Ok(objects.iter().map(|o| object_row(bucket, o)).collect());
    }
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("prefix", prefix.to_owned()), ("delimiter", "/".to_owned())];
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let page = client
            .get_query(&format!("/storage/v1/b/{bucket}/o"), &q)
            .await?;
        for p in page["prefixes"].as_array().into_iter().flatten() {
            rows.push(folder_row(bucket, p.as_str().unwrap_or_default()));
        }
        for o in page["items"].as_array().into_iter().flatten() {
            rows.push(object_row(bucket, o));
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(rows),
        }
    }
}

/// What `ls URL` lists, sorted by URL.
pub async fn rows(client: &ApiClient, url: &str, recursive: bool) -> Result<Vec<Value>> {
    let (bucket, object) = parse_gs(url)?;
    let mut rows = if has_wildcard(&object) {
        let matches = expand(client, &bucket, &object).await?;
        let mut rows: Vec<Value> = matches
            .objects
            .iter()
            .map(|o| object_row(&bucket, o))
            .collect();
        for folder in &matches.folders {
            if recursive {
                rows.extend(level(client, &bucket, folder, true).await?);
            } else {
                rows.push(folder_row(&bucket, folder));
            }
        }
        rows
    } else if object.is_empty() || object.ends_with('/') {
        level(client, &bucket, &object, recursive).await?
    } else {
        // `gs://b/x` names the object x and the folder x/: list the one, and what is in the other.
        let found = level(client, &bucket, &object, false).await?;
        let mut rows: Vec<Value> = found
            .iter()
            .filter(|r| r["name"] == object.as_str())
            .cloned()
            .collect();
        let folder = format!("{object}/");
        if found.iter().any(|r| r["name"] == folder.as_str()) {
            rows.extend(level(client, &bucket, &folder, recursive).await?);
        }
        rows
    };
    if rows.is_empty() && !object.is_empty() {
        bail!("{url} matched no objects");
    }
    rows.sort_by(|a, b| a["url"].as_str().cmp(&b["url"].as_str()));
    Ok(rows)
}

/// Prints `ls` rows: URLs, or with `long` gsutil's `SIZE  TIME  URL` lines and a total; any
/// other --format shows the rows (url, name, size, updated).
pub fn print(format: &Format, list: &ListArgs, rows: Vec<Value>, long: bool) -> Result<()> {
    if format.kind != Kind::Default {
        return print_list(format, list, rows, COLUMNS);
    }
    let rows = list.apply(rows, &default_columns(COLUMNS))?;
    let mut text = String::new();
    let (mut objects, mut bytes) = (0u64, 0u64);
    for r in &rows {
        let url = r["url"].as_str().unwrap_or_default();
        let size = r["size"].as_str().filter(|s| !s.is_empty());
        match (long, size) {
            (true, Some(size)) => {
                objects += 1;
                bytes += size.parse::<u64>().unwrap_or(0);
                let updated = rfc3339_seconds(r["updated"].as_str().unwrap_or_default());
                text.push_str(&format!("{size:>10}  {updated:<20}  {url}\n"));
            }
            (true, None) => text.push_str(&format!("{:34}{url}\n", "")),
            (false, _) => text.push_str(&format!("{url}\n")),
        }
    }
    if long && objects > 0 {
        text.push_str(&format!(
            "TOTAL: {objects} objects, {bytes} bytes ({})\n",
            human_bytes(bytes)
        ));
    }
    Ok(output::bytes(text.as_bytes())?)
}

/// An RFC 3339 time to the second, as gsutil's long listing shows it; text that is not a
/// time is shown as it is.
fn rfc3339_seconds(t: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let seconds =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::parse(t, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&seconds).ok())
        .unwrap_or_else(|| t.to_owned())
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

/// `rm [-r] URL`.
pub async fn rm(client: &ApiClient, url: &str, recursive: bool) -> Result<()> {
    let (bucket, object) = parse_gs(url)?;
    if object.is_empty() {
        if !recursive {
            bail!(
                "{url} is a bucket: `storage rm -r {url}` deletes its objects and then the bucket; `storage buckets delete {url}` deletes it when empty"
            );
        }
        for o in list_objects(client, &bucket, "").await? {
            remove(client, &bucket, o["name"].as_str().unwrap_or_default()).await?;
        }
        eprintln!("Removing gs://{bucket}/...");
        client.delete(&format!("/storage/v1/b/{bucket}")).await?;
        return Ok(());
    }
    let mut names: Vec<String> = Vec::new();
    if has_wildcard(&object) {
        let matches = expand(client, &bucket, &object).await?;
        names.extend(
            matches
                .objects
                .iter()
                .filter_map(|o| o["name"].as_str().map(str::to_owned)),
        );
        for folder in &matches.folders {
            if recursive {
                let inside = list_objects(client, &bucket, folder).await?;
                names.extend(
                    inside
                        .iter()
                        .filter_map(|o| o["name"].as_str().map(str::to_owned)),
                );
            } else {
                eprintln!("Omitting folder gs://{bucket}/{folder} (rm -r deletes what is in it).");
            }
        }
    } else if !recursive {
        // One object: the server's NOT_FOUND says so when it is not there.
        return remove(client, &bucket, &object).await;
    } else {
        let folder = format!("{}/", object.trim_end_matches('/'));
        for o in list_objects(client, &bucket, object.trim_end_matches('/')).await? {
            let name = o["name"].as_str().unwrap_or_default();
            if name == object || name.starts_with(&folder) {
                names.push(name.to_owned());
            }
        }
    }
    if names.is_empty() {
        bail!("{url} matched no objects");
    }
    for name in names {
        remove(client, &bucket, &name).await?;
    }
    Ok(())
}

async fn remove(client: &ApiClient, bucket: &str, name: &str) -> Result<()> {
    eprintln!("Removing gs://{bucket}/{name}...");
    client.delete(&object_path(bucket, name)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_listings_show_times_to_the_second_and_sizes_for_people() {
        assert_eq!(
            rfc3339_seconds("2026-05-01T12:34:56.123456789Z"),
            "2026-05-01T12:34:56Z"
        );
        assert_eq!(
            rfc3339_seconds("2026-05-01T14:34:56+02:00"),
            "2026-05-01T12:34:56Z"
        );
        assert_eq!(rfc3339_seconds(""), "");
        assert_eq!(human_bytes(7), "7 B");
        assert_eq!(human_bytes(3_000_000), "2.86 MiB");
    }
}
