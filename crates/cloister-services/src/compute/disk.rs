//! A local-driver instance's disk: an ext4 filesystem of a fixed size in a sparse file of the
//! instance's directory, mounted (through a loop device) where the launcher pulls, unpacks and
//! runs the workload. Without it the workload's writes, and the image it pulls, went to the
//! host's disk without bound: one tenant could fill the disk the metadata store lives on, and
//! every tenant's requests would fail. (The VM driver's guest writes only its own memory.)
//!
//! Made and mounted with e2fsprogs' `mkfs.ext4` and util-linux's `mount`, which set up the loop
//! device and free it when the filesystem is unmounted; no crate does either for us better.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compute Engine's default boot disk size, the default here.
pub const DEFAULT_GB: u32 = 10;

/// A disk of `gb` GiB, in bytes (no overflow: a u32 count of GiB is at most 2^62 bytes).
pub fn gib(gb: u32) -> u64 {
    u64::from(gb) << 30
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} failed: {1}")]
    Tool(&'static str, String),
}

/// Disks are sparse (thin, as most hypervisors' are): each holds only what is written to it,
/// up to its size. Logs a warning when this replica's instances, every disk full, could take
/// more than the data directory's filesystem has free: the operator sizes `--max-instances`
/// and `--instance-disk-gb` to the host.
pub fn warn_if_overcommitted(data_dir: &Path, max_instances: u32, disk_gb: u32) {
    let Ok(fs) = nix::sys::statvfs::statvfs(data_dir) else {
        return;
    };
    let free = fs.blocks_available().saturating_mul(fs.fragment_size());
    let most = gib(disk_gb).saturating_mul(u64::from(max_instances));
    if most > free {
        tracing::warn!(
            max_instances,
            disk_gb,
            free_gib = free >> 30,
            "{max_instances} instances with {disk_gb} GB disks could write {} GiB, more than the data directory's filesystem has free: lower --max-instances or --instance-disk-gb",
            most >> 30
        );
    }
}

/// The mounted disk; dropping it unmounts it and removes its file.
pub struct InstanceDisk {
    file: PathBuf,
    mount: PathBuf,
}

fn run(tool: &'static str, command: &mut Command) -> Result<(), DiskError> {
    let out = command.output().map_err(|source| DiskError::Io {
        what: format!("running {tool}"),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DiskError::Tool(
            tool,
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

impl InstanceDisk {
    /// Makes a filesystem of `bytes` in `file` and mounts it on `mount` (an existing
    /// directory). Blocking: a sparse file and an empty filesystem take a few milliseconds.
    pub fn create(file: &Path, mount: &Path, bytes: u64) -> Result<InstanceDisk, DiskError> {
        let io_err = |what: &str| {
            let what = format!("{what} {}", file.display());
            move |source| DiskError::Io { what, source }
        };
        std::fs::File::create(file)
            .and_then(|f| f.set_len(bytes))
            .map_err(io_err("creating"))?;
        let disk = InstanceDisk {
            file: file.to_owned(),
            mount: mount.to_owned(),
        };
        // No journal: the disk lives as long as the instance's run and is never replayed. No
        // blocks reserved for root: the workload runs as root in its container.
        run(
            "mkfs.ext4",
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-O", "^has_journal"])
                .arg(file),
        )?;
        // nodev, not nosuid: the container's rootfs is on it, and an image's setuid programs
        // work under Docker; the directory above is the data directory's (0700), so no host
        // user reaches them.
        run(
            "mount",
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,nodev"])
                .arg(file)
                .arg(mount),
        )?;
        Ok(disk)
    }
}

impl Drop for InstanceDisk {
    fn drop(&mut self) {
        release(&self.mount, &self.file);
    }
}

/// Unmounts a disk (lazily: a process of a crashed run may still hold a file on it; the loop
/// device is freed when the last one closes) and removes its file. Nothing there is no error.
pub fn release(mount: &Path, file: &Path) {
    match nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH) {
        // Not mounted (released already, or never made): nothing to say.
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            tracing::error!(error = %e, mount = %mount.display(), "could not unmount an instance's disk")
        }
    }
    let _ = std::fs::remove_file(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk holds what it was made for and refuses the rest, and leaves nothing mounted
    /// or on the host's disk once dropped.
    #[test]
    fn a_workload_fills_its_own_disk_not_the_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let (file, mount) = (dir.path().join("disk.img"), dir.path().join("run"));
        std::fs::create_dir(&mount).unwrap();
        let disk = InstanceDisk::create(&file, &mount, 64 << 20).unwrap();
        let allocated = |p: &Path| std::os::unix::fs::MetadataExt::blocks(&p.metadata().unwrap());
        let before = allocated(&file);
        let chunk = vec![7u8; 1 << 20];
        let mut out = std::fs::File::create(mount.join("fill")).unwrap();
        let mut written = 0u64;
        let refused = loop {
            match std::io::Write::write_all(&mut out, &chunk) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written <= 64, "wrote past the disk's 64 MiB");
        };
        assert_eq!(refused.raw_os_error(), Some(libc::ENOSPC), "{refused}");
        assert!(written > 50, "a 64 MiB disk held only {written} MiB");
        assert!(
            allocated(&file) > before,
            "the writes went to the disk's file"
        );
        drop(out);
        drop(disk);
        assert!(!file.exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&mount.display().to_string()), "{mounts}");
        assert!(!mount.join("fill").exists());
    }

    #[test]
    fn a_disk_that_cannot_be_mounted_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let e = InstanceDisk::create(
            &dir.path().join("d.img"),
            &dir.path().join("absent"),
            1 << 20,
        )
        .err()
        .expect("no mount point");
        assert!(matches!(e, DiskError::Tool("mount", _)), "{e}");
        assert!(
            !dir.path().join("d.img").exists(),
            "a failed create leaves no file"
        );
    }
}
