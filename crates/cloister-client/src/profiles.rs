//! CLI profiles: an endpoint, a credential and a cached access token under a name, stored in
//! the config directory (`$CLOISTER_CONFIG_DIR`, else `~/.config/cloister`).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::ClientError;
pub use cloister_domain::CredentialFile;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSettings {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// gcloud's `compute/zone`: the zone instance commands use without `--zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: String,
    pub endpoint: String,
    pub project: Option<String>,
    pub zone: Option<String>,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

pub struct Profiles {
    dir: PathBuf,
    config: ConfigFile,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |e| ClientError::Config(format!("{}: {e}", path.display()))
}

fn valid_name(name: &str) -> Result<(), ClientError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ClientError::Config(format!(
            "profile name {name:?} must be 1 to 64 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

impl Profiles {
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("CLOISTER_CONFIG_DIR") {
            return PathBuf::from(dir);
        }
        dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("cloister")
    }

    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join("config.toml");
        let config = match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                ClientError::Config(format!("{} does not parse: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            config,
        })
    }

    fn save(&self) -> Result<(), ClientError> {
        let text = toml::to_string(&self.config).map_err(|e| ClientError::Config(e.to_string()))?;
        write_private(&self.dir.join("config.toml"), text.as_bytes())
    }

    /// Creates (or updates the endpoint of) a profile; the first profile becomes active.
    pub fn create(
        &mut self,
        name: &str,
        endpoint: &str,
        project: Option<String>,
    ) -> Result<Profile, ClientError> {
        valid_name(name)?;
        let endpoint = endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "endpoint {endpoint:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:8080"
            )));
        }
        self.config.profiles.insert(
            name.to_owned(),
            ProfileSettings {
                endpoint: endpoint.to_owned(),
                project,
                zone: None,
            },
        );
        if self.config.active_profile.is_none() {
            self.config.active_profile = Some(name.to_owned());
        }
        self.save()?;
        self.get(name)
    }

    pub fn activate(&mut self, name: &str) -> Result<Profile, ClientError> {
        self.get(name)?;
        self.config.active_profile = Some(name.to_owned());
        self.save()?;
        self.get(name)
    }

    pub fn set_project(
        &mut self,
        name: &str,
        project: Option<String>,
    ) -> Result<Profile, ClientError> {
        self.update(name, |s| s.project = project)
    }

    /// Sets (or with `None` clears) the profile's default zone.
    pub fn set_zone(&mut self, name: &str, zone: Option<String>) -> Result<Profile, ClientError> {
        self.update(name, |s| s.zone = zone)
    }

    fn update(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut ProfileSettings),
    ) -> Result<Profile, ClientError> {
        let settings = self
            .config
            .profiles
            .get_mut(name)
            .ok_or_else(|| unknown(name))?;
        change(settings);
        self.save()?;
        self.get(name)
    }

    pub fn delete(&mut self, name: &str) -> Result<(), ClientError> {
        self.config
            .profiles
            .remove(name)
            .ok_or_else(|| unknown(name))?;
        if self.config.active_profile.as_deref() == Some(name) {
            self.config.active_profile = None;
        }
        for file in [self.credential_path(name), self.token_path(name)] {
            let _ = fs::remove_file(file);
        }
        self.save()
    }

    pub fn list(&self) -> Vec<Profile> {
        self.config
            .profiles
            .keys()
            .filter_map(|n| self.get(n).ok())
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Profile, ClientError> {
        let s = self
            .config
            .profiles
            .get(name)
            .ok_or_else(|| unknown(name))?;
        Ok(Profile {
            name: name.to_owned(),
            endpoint: s.endpoint.clone(),
            project: s.project.clone(),
            zone: s.zone.clone(),
            active: self.config.active_profile.as_deref() == Some(name),
        })
    }

    /// The profile to use: `requested` (from `--profile` or `CLOISTER_PROFILE`), else the active one.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Profile, ClientError> {
        match requested.or(self.config.active_profile.as_deref()) {
            Some(name) => self.get(name),
            None => Err(ClientError::Config(
                "no profile is active. Create one: `cloister config profiles create NAME --endpoint URL`, \
                 then `cloister auth login --credential-file FILE`"
                    .into(),
            )),
        }
    }

    fn credential_path(&self, name: &str) -> PathBuf {
        self.dir.join("credentials").join(format!("{name}.json"))
    }

    fn token_path(&self, name: &str) -> PathBuf {
        self.dir.join("tokens").join(format!("{name}.json"))
    }

    pub fn save_credential(&self, profile: &str, cred: &CredentialFile) -> Result<(), ClientError> {
        let json =
            serde_json::to_vec_pretty(cred).map_err(|e| ClientError::Config(e.to_string()))?;
        write_private(&self.credential_path(profile), &json)?;
        let _ = fs::remove_file(self.token_path(profile));
        Ok(())
    }

    pub fn credential(&self, profile: &str) -> Result<CredentialFile, ClientError> {
        let path = self.credential_path(profile);
        let text = fs::read(&path).map_err(|_| {
            ClientError::Config(format!(
                "profile {profile} has no credential. Run `cloister auth login --credential-file FILE --profile {profile}`"
            ))
        })?;
        parse_credential(&text, &path)
    }

    pub fn cached_token(&self, profile: &str) -> Option<CachedToken> {
        let text = fs::read(self.token_path(profile)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn cache_token(&self, profile: &str, token: &CachedToken) -> Result<(), ClientError> {
        let json = serde_json::to_vec(token).map_err(|e| ClientError::Config(e.to_string()))?;
        write_private(&self.token_path(profile), &json)
    }
}

/// Parses a credential file, saying what is wrong with it.
pub fn parse_credential(text: &[u8], path: &Path) -> Result<CredentialFile, ClientError> {
    let cred: CredentialFile = serde_json::from_slice(text).map_err(|e| {
        ClientError::Config(format!(
            "{} is not a Cloister credential file: {e}",
            path.display()
        ))
    })?;
    if cred.kind != cloister_domain::CREDENTIAL_TYPE {
        return Err(ClientError::Config(format!(
            "{} has type {:?}; expected \"cloister_user_credential\"",
            path.display(),
            cred.kind
        )));
    }
    Ok(cred)
}

fn unknown(name: &str) -> ClientError {
    ClientError::Config(format!(
        "profile {name:?} does not exist. `cloister config profiles list` shows the profiles; \
         `cloister config profiles create {name} --endpoint URL` creates it"
    ))
}

/// Writes a file readable only by its owner (credentials and tokens are secrets), atomically.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_persist_and_the_first_is_active() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::load(dir.path()).unwrap();
        p.create("primus", "http://127.0.0.1:1/", None).unwrap();
        p.create("secundus", "http://127.0.0.1:2", Some("secundus-1".into()))
            .unwrap();
        let p = Profiles::load(dir.path()).unwrap();
        assert_eq!(p.resolve(None).unwrap().name, "primus");
        assert_eq!(p.resolve(None).unwrap().endpoint, "http://127.0.0.1:1");
        assert_eq!(
            p.resolve(Some("secundus")).unwrap().project.as_deref(),
            Some("secundus-1")
        );
        assert!(
            p.resolve(Some("nobody"))
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn bad_names_endpoints_and_credential_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::load(dir.path()).unwrap();
        assert!(p.create("Bad Name", "http://x", None).is_err());
        assert!(
            p.create("ok", "ftp://x", None)
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        let err =
            parse_credential(br#"{"type":"service_account"}"#, Path::new("f.json")).unwrap_err();
        assert!(
            err.to_string().contains("not a Cloister credential file"),
            "{err}"
        );
    }

    #[test]
    fn credentials_are_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::load(dir.path()).unwrap();
        p.create("a", "http://x", None).unwrap();
        let cred = CredentialFile {
            kind: "cloister_user_credential".into(),
            client_email: "a@x.com".into(),
            client_id: "cred-1".into(),
            client_secret: "s".into(),
            token_uri: "http://x/oauth2/token".into(),
        };
        p.save_credential("a", &cred).unwrap();
        let mode = fs::metadata(dir.path().join("credentials/a.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(p.credential("a").unwrap().client_id, "cred-1");
    }
}
