//! Docker's credential helpers, as gcloud provides them: `cloister auth configure-docker`
//! names `cloister` as the helper of a registry host in Docker's `config.json`, and the same
//! binary run as `docker-credential-cloister` answers docker's, podman's and skopeo's `get`
//! with the profile's access token. So the codelab's `gcloud auth configure-docker` then
//! `docker push` runs unchanged.
//!
//! A token goes only to the registry that issued it: `get` answers for a host only when it
//! is the chosen profile's own endpoint, whatever `config.json` maps to this helper.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use cloister_client::Profiles;
use cloister_client::api::access_token;
use serde_json::{Value, json};

/// The helper's name in `credHelpers`; docker runs `docker-credential-` + this.
const HELPER: &str = "cloister";
/// The user name registries expect beside an OAuth access token (Google's, and Cloister's).
const TOKEN_USER: &str = "oauth2accesstoken";

/// `https://host:port/path` → `host:port`, the form docker keys registries by.
pub fn registry_host(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// Docker's client configuration file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
fn docker_config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = dirs::home_dir().context("no home directory: set DOCKER_CONFIG")?;
    Ok(home.join(".docker").join("config.json"))
}

/// Adds `host → cloister` to `credHelpers` for each host, keeping everything else in the
/// file; written through a temporary file and a rename, mode 0600 (it may hold secrets).
pub fn configure(hosts: &[String]) -> Result<()> {
    let path = docker_config_path()?;
    let mut config: Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not JSON; fix or move it, then run this again",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Some(object) = config.as_object_mut() else {
        bail!("{} is not a JSON object", path.display());
    };
    let helpers = object.entry("credHelpers").or_insert_with(|| json!({}));
    let Some(helpers) = helpers.as_object_mut() else {
        bail!("credHelpers in {} is not a JSON object", path.display());
    };
    for host in hosts {
        eprintln!("Adding credentials for: {host}");
        helpers.insert(host.clone(), json!(HELPER));
    }
    let dir = path.parent().context("the config file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut file, &config)?;
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    file.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("Docker configuration file updated: {}", path.display());
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|p| p.join(format!("docker-credential-{HELPER}")).is_file())
    });
    if !on_path {
        eprintln!(
            "WARNING: `docker-credential-{HELPER}` is not in the PATH; docker finds the helper by that name: \
             ln -s \"$(command -v cloister)\" /usr/local/bin/docker-credential-{HELPER}"
        );
    }
    Ok(())
}

/// `docker-credential-cloister get|store|erase|list`.
pub async fn helper(action: Option<&str>) -> ExitCode {
    match answer(action).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Docker shows the helper's stdout as the error message.
            println!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn answer(action: Option<&str>) -> Result<String> {
    let profiles = Profiles::load(&Profiles::default_dir())?;
    let profile = profiles.resolve(std::env::var("CLOISTER_PROFILE").ok().as_deref())?;
    let own = registry_host(&profile.endpoint);
    match action {
        Some("get") => {
            let mut asked = String::new();
            std::io::stdin().read_to_string(&mut asked)?;
            let host = registry_host(asked.trim());
            if host != own {
                bail!(
                    "credentials not found in native keychain: profile {} signs in to {own}, not {host}; \
                     set CLOISTER_PROFILE to the profile whose endpoint is {host}",
                    profile.name
                );
            }
            let token = access_token(&profiles, &profile).await?;
            Ok(
                json!({"ServerURL": asked.trim(), "Username": TOKEN_USER, "Secret": token})
                    .to_string(),
            )
        }
        Some("list") => Ok(json!({ own: TOKEN_USER }).to_string()),
        Some(other @ ("store" | "erase")) => bail!(
            "`{other}` is not supported: the credentials are the Cloister profile's ({}); use `cloister auth login`",
            profile.name
        ),
        _ => bail!("usage: docker-credential-{HELPER} get|list (the server URL on stdin)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_by_host_and_port() {
        for (url, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("https://cloister.example.com/", "cloister.example.com"),
            ("cloister.example.com:443", "cloister.example.com:443"),
            ("https://h:1/v2/", "h:1"),
        ] {
            assert_eq!(registry_host(url), host, "{url}");
        }
    }
}
