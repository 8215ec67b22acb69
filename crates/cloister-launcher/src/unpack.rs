//! Unpacking image layers into a rootfs without ever writing outside it.
//!
//! Written by hand over the `tar` crate's entry iterator (rather than `Entry::unpack`) because
//! the rules are the launcher's, not a general extractor's: every entry's path is normalised
//! and refused if it is absolute or climbs with `..`; no write goes through a symlink (every
//! ancestor inside the rootfs is checked, and an existing symlink at the target is replaced,
//! never followed); hard links must point at a regular file already inside the rootfs; device
//! nodes and FIFOs are refused; OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what lower
//! layers put there; total size and entry count are bounded. A refusal aborts the launch.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::LaunchError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// Running totals across all layers of one image.
#[derive(Debug, Default)]
pub struct Usage {
    bytes: u64,
    entries: u64,
}

fn refuse(layer: &str, why: String) -> LaunchError {
    LaunchError::Unpack(format!(
        "layer {layer}: {why}; nothing of it was written outside the bundle"
    ))
}

/// `path` inside the archive as a relative path with only normal components.
fn normal(layer: &str, raw: &Path) -> Result<PathBuf, LaunchError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(
                    layer,
                    format!("the absolute path {} is not allowed", raw.display()),
                ));
            }
            Component::ParentDir => {
                return Err(refuse(
                    layer,
                    format!("the path {} climbs out with '..'", raw.display()),
                ));
            }
        }
    }
    Ok(out)
}

/// Refuses when any existing ancestor of `rel` inside `root` is a symlink (a write through it
/// could land anywhere).
fn check_ancestors(layer: &str, root: &Path, rel: &Path) -> Result<(), LaunchError> {
    let mut at = root.to_owned();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(
                    layer,
                    format!(
                        "{} would be written through the symlink {}",
                        rel.display(),
                        at.strip_prefix(root).unwrap_or(&at).display()
                    ),
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(refuse(
                    layer,
                    format!(
                        "{} is inside {}, which is not a directory",
                        rel.display(),
                        at.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&at)
                    .map_err(|e| LaunchError::Io(format!("creating {}: {e}", at.display())))?;
            }
            Err(e) => return Err(LaunchError::Io(format!("{}: {e}", at.display()))),
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (file, symlink or tree) without following symlinks.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks one layer (`tar`, or `tar+gzip` when `gzip`) into `root`.
pub fn unpack_layer(
    layer: &str,
    file: &Path,
    gzip: bool,
    root: &Path,
    limits: Limits,
    usage: &mut Usage,
) -> Result<(), LaunchError> {
    let io_err = |e: io::Error| LaunchError::Io(format!("reading layer {layer}: {e}"));
    let reader: Box<dyn Read> = {
        let f = fs::File::open(file).map_err(io_err)?;
        if gzip {
            Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f)))
        } else {
            Box::new(io::BufReader::new(f))
        }
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        usage.entries += 1;
        usage.bytes += entry.header().size().unwrap_or(0);
        if usage.entries > limits.max_entries || usage.bytes > limits.max_bytes {
            return Err(refuse(
                layer,
                format!(
                    "the image exceeds the unpack limits ({} entries, {} bytes)",
                    limits.max_entries, limits.max_bytes
                ),
            ));
        }
        let raw = entry.path().map_err(io_err)?.into_owned();
        let rel = normal(layer, &raw)?;
        if rel.as_os_str().is_empty() {
            continue; // the archive's root directory
        }
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        check_ancestors(layer, root, &rel)?;
        let target = root.join(&rel);
        // Whiteouts: delete what lower layers put here.
        if name == ".wh..wh..opq" {
            let dir = target.parent().unwrap_or(root);
            for child in fs::read_dir(dir).map_err(io_err)? {
                remove(&child.map_err(io_err)?.path()).map_err(io_err)?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            // `.wh..` or `.wh...` would whiteout the directory itself or its parent.
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refuse(
                    layer,
                    format!("the whiteout {} names no file", rel.display()),
                ));
            }
            remove(&target.with_file_name(hidden)).map_err(io_err)?;
            continue;
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    remove(&target).map_err(io_err)?;
                }
                fs::create_dir_all(&target).map_err(io_err)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io_err)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove(&target).map_err(io_err)?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err)?;
                io::copy(&mut entry, &mut out).map_err(io_err)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name().map_err(io_err)?.ok_or_else(|| {
                    refuse(
                        layer,
                        format!("the symlink {} has no target", rel.display()),
                    )
                })?;
                remove(&target).map_err(io_err)?;
                // The target is stored as is: runc resolves it inside the rootfs at run time,
                // and this unpacker never writes through it.
                std::os::unix::fs::symlink(&link, &target).map_err(io_err)?;
            }
            tar::EntryType::Link => {
                let link = entry.link_name().map_err(io_err)?.ok_or_else(|| {
                    refuse(
                        layer,
                        format!("the hard link {} has no target", rel.display()),
                    )
                })?;
                let source_rel = normal(layer, &link)?;
                check_ancestors(layer, root, &source_rel)?;
                let source = root.join(&source_rel);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(refuse(
                            layer,
                            format!(
                                "the hard link {} points at {}, which is not a regular file already in the image",
                                rel.display(),
                                link.display()
                            ),
                        ));
                    }
                }
                remove(&target).map_err(io_err)?;
                fs::hard_link(&source, &target).map_err(io_err)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(refuse(
                    layer,
                    format!(
                        "{} is a device node or FIFO, which images may not contain",
                        rel.display()
                    ),
                ));
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(refuse(
                    layer,
                    format!(
                        "{} has the unsupported tar entry type {other:?}",
                        rel.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Device(&'a str),
    }

    /// A tar built by hand, so paths the `tar` crate's builder would refuse can be written.
    fn layer(dir: &Path, name: &str, entries: &[E]) -> PathBuf {
        let path = dir.join(name);
        let mut out = Vec::new();
        for e in entries {
            let mut h = tar::Header::new_old();
            let (p, kind, body, link): (&str, tar::EntryType, &[u8], Option<&str>) = match e {
                E::File(p, b) => (p, tar::EntryType::Regular, b, None),
                E::Dir(p) => (p, tar::EntryType::Directory, b"", None),
                E::Symlink(p, t) => (p, tar::EntryType::Symlink, b"", Some(t)),
                E::Hardlink(p, t) => (p, tar::EntryType::Link, b"", Some(t)),
                E::Device(p) => (p, tar::EntryType::Char, b"", None),
            };
            h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
            if let Some(t) = link {
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        fs::write(&path, out).unwrap();
        path
    }

    fn unpack(dir: &Path, root: &Path, entries: &[E]) -> Result<(), LaunchError> {
        let l = layer(dir, "l.tar", entries);
        unpack_layer(
            "sha256:test",
            &l,
            false,
            root,
            Limits::default(),
            &mut Usage::default(),
        )
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("bundle/rootfs");
        fs::create_dir_all(&root).unwrap();
        let outside = d.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        (d, root, outside)
    }

    #[test]
    fn layers_stack_with_whiteouts() {
        let (d, root, _) = setup();
        unpack(
            d.path(),
            &root,
            &[
                E::Dir("app"),
                E::File("app/a", b"1"),
                E::File("app/b", b"2"),
                E::Dir("etc"),
                E::File("etc/x", b"x"),
            ],
        )
        .unwrap();
        unpack(
            d.path(),
            &root,
            &[
                E::File("app/.wh.a", b""),
                E::File("etc/.wh..wh..opq", b""),
                E::File("etc/y", b"y"),
                E::Hardlink("app/c", "app/b"),
            ],
        )
        .unwrap();
        assert!(!root.join("app/a").exists());
        assert_eq!(fs::read(root.join("app/c")).unwrap(), b"2");
        assert!(!root.join("etc/x").exists());
        assert_eq!(fs::read(root.join("etc/y")).unwrap(), b"y");
    }

    #[test]
    fn escapes_are_refused_and_write_nothing_outside() {
        let (d, root, outside) = setup();
        let victim = outside.join("victim");
        fs::write(&victim, b"host file").unwrap();
        let cases: Vec<(Vec<E>, &str)> = vec![
            (vec![E::File("../../outside/evil", b"x")], "climbs out"),
            (vec![E::File("/outside/evil", b"x")], "absolute path"),
            (
                vec![
                    E::Symlink("link", outside.to_str().unwrap()),
                    E::File("link/evil", b"x"),
                ],
                "through the symlink",
            ),
            (
                vec![
                    E::Symlink("v", victim.to_str().unwrap()),
                    E::Hardlink("h", "v"),
                ],
                "not a regular file already in the image",
            ),
            (
                vec![E::Hardlink("h", victim.to_str().unwrap())],
                "absolute path",
            ),
            (vec![E::Hardlink("h", "../outside/victim")], "climbs out"),
            (vec![E::Device("dev/sda")], "device node"),
            (vec![E::File(".wh...", b"")], "names no file"),
            (vec![E::Dir("a"), E::File("a/.wh..", b"")], "names no file"),
        ];
        for (entries, why) in cases {
            let err = unpack(d.path(), &root, &entries).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"host file");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "nothing appeared outside"
        );
        // A symlink replaced by a file is replaced, never followed.
        unpack(
            d.path(),
            &root,
            &[
                E::Symlink("f", victim.to_str().unwrap()),
                E::File("f", b"inside"),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"host file");
        assert_eq!(fs::read(root.join("f")).unwrap(), b"inside");
    }

    #[test]
    fn size_limits_hold() {
        let (d, root, _) = setup();
        let l = layer(d.path(), "big.tar", &[E::File("a", &[0u8; 4096])]);
        let limits = Limits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let err = unpack_layer(
            "sha256:big",
            &l,
            false,
            &root,
            limits,
            &mut Usage::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exceeds the unpack limits"),
            "{err}"
        );
    }
}
