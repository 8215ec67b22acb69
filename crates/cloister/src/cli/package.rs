//! Packaging a local executable as a minimal OCI image, for machines without Docker: the
//! executable, every shared library it loads (found from its ELF dynamic section, resolved as
//! the dynamic loader would: RPATH/RUNPATH with `$ORIGIN`, then the system directories) and
//! its ELF interpreter, plus any extra files, in one uncompressed tar layer.
//!
//! The layer is deterministic (sorted entries, mtime 0, owner root), so packaging the same
//! files twice gives the same digest — the digest a model owner's policy pins. Uncompressed,
//! because the layer digest then equals its diff id and nothing is spent compressing
//! already-dense model runtimes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where the dynamic loader looks when a library's own search paths do not have it.
const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Files for the image: path inside the image → file on this machine.
pub type Files = BTreeMap<String, PathBuf>;

/// The executable's interpreter and shared libraries, transitively, at the paths the loader
/// will look for them. A static executable has none.
pub fn elf_closure(executable: &Path) -> Result<Files> {
    let mut files = Files::new();
    let mut queue = vec![executable.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(file) = queue.pop() {
        let real = file
            .canonicalize()
            .with_context(|| format!("cannot read {}", file.display()))?;
        if !seen.insert(real.clone()) {
            continue;
        }
        let bytes =
            std::fs::read(&real).with_context(|| format!("cannot read {}", real.display()))?;
        let elf = goblin::elf::Elf::parse(&bytes)
            .with_context(|| format!("{} is not an ELF executable or library", file.display()))?;
        if let Some(interpreter) = elf.interpreter {
            files.insert(interpreter.to_owned(), PathBuf::from(interpreter));
            queue.push(PathBuf::from(interpreter));
        }
        let origin = real.parent().unwrap_or(Path::new("/")).to_owned();
        let own_dirs: Vec<PathBuf> = elf
            .rpaths
            .iter()
            .chain(elf.runpaths.iter())
            .flat_map(|p| p.split(':'))
            .map(|d| PathBuf::from(d.replace("$ORIGIN", &origin.to_string_lossy())))
            .collect();
        for needed in &elf.libraries {
            let found = if needed.contains('/') {
                Some(PathBuf::from(needed))
            } else {
                own_dirs
                    .iter()
                    .cloned()
                    .chain(SYSTEM_LIBRARY_DIRS.iter().map(PathBuf::from))
                    .map(|d| d.join(needed))
                    .find(|p| p.is_file())
            };
            let found = found.with_context(|| {
                format!(
                    "{} needs {needed}, which is in none of {} (install it, or pass it with --file)",
                    file.display(),
                    SYSTEM_LIBRARY_DIRS.join(", ")
                )
            })?;
            files.insert(found.to_string_lossy().into_owned(), found.clone());
            queue.push(found);
        }
    }
    Ok(files)
}

/// Whether `path` starts with the ELF magic.
pub fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// An absolute, normal path inside the image (no `..`, no `.`).
pub fn image_path(path: &str) -> Result<String> {
    // By segment, not `Path::components`, which silently drops `.` and empty segments.
    let normal = path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
    });
    if !normal {
        bail!(
            "{path:?} is not an absolute file path inside the image (no '..', '.', or trailing '/')"
        );
    }
    Ok(path.to_owned())
}

/// A `Write` that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the layer tar to `out`; returns its digest and size.
pub fn write_layer(files: &Files, out: std::fs::File) -> Result<(String, u64)> {
    let mut dirs = BTreeSet::new();
    for path in files.keys() {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| *d != Path::new("/")) {
            dirs.insert(dir.to_owned());
            p = dir.parent();
        }
    }
    let writer = Hashing {
        inner: std::io::BufWriter::new(out),
        hash: Sha256::new(),
        size: 0,
    };
    let mut tar = tar::Builder::new(writer);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for dir in &dirs {
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, rel, std::io::empty())?;
    }
    for (path, source) in files {
        let meta = std::fs::metadata(source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", source.display());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let mut h = header(tar::EntryType::Regular, mode, meta.len());
        let file = std::fs::File::open(source)?;
        tar.append_data(&mut h, path.trim_start_matches('/'), file)
            .with_context(|| format!("adding {} to the layer", source.display()))?;
    }
    let mut writer = tar.into_inner()?;
    writer.flush()?;
    Ok((
        format!("sha256:{}", hex::encode(writer.hash.finalize())),
        writer.size,
    ))
}

/// The image configuration: what runs, and the launch policy labels.
pub struct Settings {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

pub fn config(settings: &Settings, layer_digest: &str) -> Value {
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    env.extend(settings.env.iter().cloned());
    json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {
            "Entrypoint": settings.entrypoint,
            "Cmd": settings.cmd,
            "Env": env,
            "WorkingDir": settings.workdir.clone().unwrap_or_else(|| "/".into()),
            "Labels": settings.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "cloister artifacts push"}],
    })
}

pub fn manifest(config: &[u8], layer_digest: &str, layer_size: u64) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(config))),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_brings_its_loader_and_libraries() {
        let files = elf_closure(Path::new("/bin/true")).unwrap();
        assert!(files.keys().any(|p| p.contains("ld-linux")), "{files:?}");
        assert!(files.keys().any(|p| p.ends_with("/libc.so.6")), "{files:?}");
    }

    #[test]
    fn a_non_elf_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = elf_closure(&script).unwrap_err().to_string();
        assert!(err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn image_paths_stay_inside_the_image() {
        assert!(image_path("/models/m.onnx").is_ok());
        for bad in ["models/m", "/a/../etc/passwd", "/a/./b", "/a/"] {
            assert!(image_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_layer_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let files = Files::from([("/opt/app/f".to_owned(), dir.path().join("f"))]);
        let digest = |name: &str| {
            let out = std::fs::File::create(dir.path().join(name)).unwrap();
            write_layer(&files, out).unwrap()
        };
        let (a, b) = (digest("a.tar"), digest("b.tar"));
        assert_eq!(a, b);
        let listed: Vec<String> =
            tar::Archive::new(std::fs::File::open(dir.path().join("a.tar")).unwrap())
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect();
        assert_eq!(listed, ["opt", "opt/app", "opt/app/f"]);
    }
}
