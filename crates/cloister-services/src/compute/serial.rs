//! An instance's serial console on disk, bounded. The launcher's (or QEMU's) output reaches
//! the file through the platform, not by the process writing the file itself, so a workload
//! that prints without end cannot fill the host's disk, which every tenant shares, nor make
//! each read of its console copy gigabytes.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The most bytes an instance's console keeps, across its restarts.
pub const MAX_SERIAL_BYTES: u64 = 16 << 20;

const DROPPED: &[u8] = b"\n[cloister: the serial console keeps 16 MiB; later output is dropped]\n";

/// Appends what `from` produces to `path` until the file holds [`MAX_SERIAL_BYTES`], says once
/// that the rest is dropped, and keeps reading `from` to its end so the writer never blocks.
pub async fn copy_bounded(mut from: impl AsyncRead + Unpin, path: &Path) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        // The size on disk, not a count of our own: stdout and stderr copy into one file.
        let size = file.metadata().await?.len();
        let room = MAX_SERIAL_BYTES.saturating_sub(size);
        if room == 0 {
            // Full to the byte and not yet said so: the chunk before filled it exactly.
            if size == MAX_SERIAL_BYTES {
                file.write_all(DROPPED).await?;
                file.flush().await?;
            }
            continue;
        }
        let kept = usize::try_from(room).unwrap_or(usize::MAX).min(n);
        file.write_all(&buf[..kept]).await?;
        if kept < n {
            file.write_all(DROPPED).await?;
        }
        // tokio's file finishes a write in the background: until flushed, the size read above
        // for the next chunk could miss it and the file outgrow its limit (seen under load).
        file.flush().await?;
    }
}

/// Makes room in a console for a new run of its instance: past half its limit, only the last
/// half is kept (a console that earlier runs filled would drop everything a restarted run
/// says). Compute Engine's console, too, keeps the latest output.
pub fn make_room(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let keep = MAX_SERIAL_BYTES / 2;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if len <= keep {
        return Ok(());
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(len - keep))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let fresh = path.with_extension("log.new");
    std::fs::write(&fresh, &tail)?;
    std::fs::rename(&fresh, path)
}

/// Copies a child's output into its console in the background (to the output's end: the
/// child and whatever inherited its descriptors have exited).
pub fn spawn_copy(from: Option<impl AsyncRead + Unpin + Send + 'static>, path: &Path) {
    let Some(from) = from else { return };
    let path = path.to_path_buf();
    tokio::spawn(async move {
        if let Err(e) = copy_bounded(from, &path).await {
            tracing::warn!(error = %e, console = %path.display(), "copying a serial console");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_finds_room_in_a_full_console() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        make_room(&path).unwrap();
        let mut full = vec![b'a'; MAX_SERIAL_BYTES as usize];
        full[MAX_SERIAL_BYTES as usize - 1] = b'z';
        std::fs::write(&path, &full).unwrap();
        make_room(&path).unwrap();
        let kept = std::fs::read(&path).unwrap();
        assert_eq!(kept.len() as u64, MAX_SERIAL_BYTES / 2);
        assert_eq!(kept.last(), Some(&b'z'), "the latest output stays");
        std::fs::write(&path, b"short").unwrap();
        make_room(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    #[tokio::test]
    async fn a_console_stops_growing_at_its_limit_and_says_so() {
        let line = b"a workload that never stops printing\n";
        // More than the limit in one run; exactly the limit, then a restart's output.
        for (first, extra) in [
            (MAX_SERIAL_BYTES as usize + 100_000, 0),
            (MAX_SERIAL_BYTES as usize, 1),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("serial.log");
            let endless: Vec<u8> = line.iter().copied().cycle().take(first).collect();
            copy_bounded(endless.as_slice(), &path).await.unwrap();
            // A restart's output is dropped too: the limit is the file's, not one run's.
            for _ in 0..extra + 1 {
                copy_bounded(&b"after a restart\n"[..], &path)
                    .await
                    .unwrap();
            }
            let kept = std::fs::read(&path).unwrap();
            assert_eq!(kept.len() as u64, MAX_SERIAL_BYTES + DROPPED.len() as u64);
            assert!(kept.ends_with(DROPPED), "{first}");
            assert_eq!(&kept[..line.len()], line);
        }
    }
}
