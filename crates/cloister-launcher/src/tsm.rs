//! The configfs-tsm attester (`/sys/kernel/config/tsm/report`), how a guest kernel hands out
//! SEV-SNP reports and TDX quotes: create an entry (mkdir), write the 64-byte REPORT_DATA to
//! `inblob`, read `outblob` (the report or quote) and `auxblob` (SNP: the certificate table
//! with the VCEK), and check that `generation` did not move in between (another writer would
//! have changed what `outblob` answers). The entry is removed afterwards.

use std::path::{Path, PathBuf};

use crate::LaunchError;

pub const CONFIGFS_TSM: &str = "/sys/kernel/config/tsm/report";

/// What the kernel returned for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// `sev_guest` or `tdx_guest`.
    pub provider: String,
    pub outblob: Vec<u8>,
    pub auxblob: Option<Vec<u8>>,
}

fn io(path: &Path, what: &str) -> impl Fn(std::io::Error) -> LaunchError {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| LaunchError::Attest(format!("configfs-tsm: {what} {path}: {e}"))
}

fn generation(entry: &Path) -> Result<u64, LaunchError> {
    let path = entry.join("generation");
    let text = std::fs::read_to_string(&path).map_err(io(&path, "reading"))?;
    text.trim().parse().map_err(|_| {
        LaunchError::Attest(format!("configfs-tsm: generation {text:?} is not a number"))
    })
}

/// Retries `f` briefly: a configfs entry answers at once, a fake one in tests a moment later.
fn settle<T>(mut f: impl FnMut() -> Result<Option<T>, LaunchError>) -> Result<T, LaunchError> {
    for _ in 0..1000 {
        if let Some(v) = f()? {
            return Ok(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(LaunchError::Attest(
        "configfs-tsm: the report interface did not answer".into(),
    ))
}

/// Requests a report binding `report_data` from the TSM at `root` (normally [`CONFIGFS_TSM`]).
pub fn request(root: &Path, report_data: &[u8; 64]) -> Result<TsmReport, LaunchError> {
    if !root.is_dir() {
        return Err(LaunchError::Attest(format!(
            "configfs-tsm is not available at {}: this guest has no SEV-SNP or TDX report interface (a kernel with CONFIG_TSM_REPORTS, configfs mounted)",
            root.display()
        )));
    }
    let entry: PathBuf = root.join(format!(
        "cloister-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&entry).map_err(io(&entry, "creating"))?;
    let result = request_in(&entry, report_data);
    // configfs entries are removed with rmdir; a fake tree in tests needs remove_dir_all.
    if std::fs::remove_dir(&entry).is_err() {
        let _ = std::fs::remove_dir_all(&entry);
    }
    result
}

fn request_in(entry: &Path, report_data: &[u8; 64]) -> Result<TsmReport, LaunchError> {
    let before = settle(|| Ok(generation(entry).ok()))?;
    let inblob = entry.join("inblob");
    std::fs::write(&inblob, report_data).map_err(io(&inblob, "writing"))?;
    // Our write moves the generation by one.
    let written = settle(|| Ok(generation(entry).ok().filter(|g| *g != before)))?;
    if written != before + 1 {
        return Err(LaunchError::Attest(format!(
            "configfs-tsm: the entry's generation went from {before} to {written}: another writer raced this request; retry"
        )));
    }
    let outblob_path = entry.join("outblob");
    let outblob = std::fs::read(&outblob_path).map_err(io(&outblob_path, "reading"))?;
    let auxblob = std::fs::read(entry.join("auxblob"))
        .ok()
        .filter(|a| !a.is_empty());
    let provider_path = entry.join("provider");
    let provider = std::fs::read_to_string(&provider_path)
        .map_err(io(&provider_path, "reading"))?
        .trim()
        .to_owned();
    // Still ours after reading: nobody wrote inblob while the report was read.
    if generation(entry)? != written {
        return Err(LaunchError::Attest(
            "configfs-tsm: the entry changed while its report was read: another writer raced this request; retry".into(),
        ));
    }
    if outblob.is_empty() {
        return Err(LaunchError::Attest(
            "configfs-tsm: the kernel returned an empty report".into(),
        ));
    }
    Ok(TsmReport {
        provider,
        outblob,
        auxblob,
    })
}

/// What a fake TSM answers for an inblob: (outblob, auxblob).
#[cfg(test)]
pub(crate) type Respond = fn(&[u8]) -> (Vec<u8>, Vec<u8>);

/// A fake TSM for tests, since no machine here has SEV-SNP or TDX: a thread plays the kernel
/// for the first entry created under `root`, answering `respond(inblob)` = (outblob, auxblob).
#[cfg(test)]
pub(crate) fn fake_kernel(
    root: &Path,
    provider: &'static str,
    racing: bool,
    respond: Respond,
) -> std::thread::JoinHandle<()> {
    let root = root.to_owned();
    std::thread::spawn(move || {
        for _ in 0..2500 {
            if let Some(entry) = std::fs::read_dir(&root)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
            {
                let entry = entry.path();
                std::fs::write(entry.join("generation"), "0").unwrap();
                std::fs::write(entry.join("provider"), provider).unwrap();
                let inblob = entry.join("inblob");
                for _ in 0..2500 {
                    if let Ok(data) = std::fs::read(&inblob)
                        && data.len() == 64
                    {
                        let (outblob, auxblob) = respond(&data);
                        std::fs::write(entry.join("outblob"), outblob).unwrap();
                        std::fs::write(entry.join("auxblob"), auxblob).unwrap();
                        std::fs::write(entry.join("generation"), if racing { "2" } else { "1" })
                            .unwrap();
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(inblob: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut report = b"REPORT:".to_vec();
        report.extend_from_slice(inblob);
        (report, b"certs".to_vec())
    }

    fn with_kernel(provider: &'static str, racing: bool) -> Result<TsmReport, LaunchError> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("report");
        std::fs::create_dir_all(&root).unwrap();
        let kernel = fake_kernel(&root, provider, racing, echo);
        let result = request(&root, &[7u8; 64]);
        let _ = kernel.join();
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "the entry is removed"
        );
        result
    }

    #[test]
    fn a_report_is_requested_through_configfs() {
        let r = with_kernel("sev_guest", false).unwrap();
        assert_eq!(r.provider, "sev_guest");
        assert_eq!(&r.outblob[..7], b"REPORT:");
        assert_eq!(&r.outblob[7..], &[7u8; 64]);
        assert_eq!(r.auxblob.as_deref(), Some(&b"certs"[..]));
    }

    #[test]
    fn a_racing_writer_and_a_missing_interface_are_errors() {
        let err = with_kernel("tdx_guest", true).unwrap_err().to_string();
        assert!(err.contains("raced"), "{err}");
        let err = request(Path::new("/nonexistent/tsm/report"), &[0; 64])
            .unwrap_err()
            .to_string();
        assert!(err.contains("configfs-tsm is not available"), "{err}");
    }
}
