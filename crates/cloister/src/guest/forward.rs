//! `cloister forward`: one connection of a guest, on stdin/stdout (QEMU's slirp runs this per
//! connection a guest opens to a `guestfwd` address: its `tcp:` form serves only the first
//! connection), copied both ways to the instance's metadata socket or to the API.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// A unix socket (the instance's metadata server).
    #[arg(long, conflicts_with = "tcp", required_unless_present = "tcp")]
    unix: Option<PathBuf>,
    /// A TCP address (the API), HOST:PORT.
    #[arg(long)]
    tcp: Option<String>,
    /// A directory of lock files, one per connection the instance may have open at once: a
    /// forward that finds none free ends at once (the guest sees its connection closed).
    #[arg(long)]
    slots: Option<PathBuf>,
}

/// One free slot of `dir`, held (locked) until this process exits.
fn take_slot(dir: &Path) -> Result<std::fs::File> {
    use cloister_services::compute::vm::FORWARD_SLOTS;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 0..FORWARD_SLOTS {
        let path = dir.join(format!("slot-{i}"));
        let slot = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if slot.try_lock().is_ok() {
            return Ok(slot);
        }
    }
    anyhow::bail!("the instance has {FORWARD_SLOTS} connections open already; this one is closed")
}

fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() || to.flush().is_err() {
            break;
        }
    }
}

pub fn run(args: ForwardArgs) -> Result<()> {
    let _slot = args.slots.as_deref().map(take_slot).transpose()?;
    let (reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) =
        match (&args.unix, &args.tcp) {
            (Some(path), _) => {
                let s = std::os::unix::net::UnixStream::connect(path)
                    .with_context(|| format!("connecting to {}", path.display()))?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
            (None, Some(addr)) => {
                let s = std::net::TcpStream::connect(addr)
                    .with_context(|| format!("connecting to {addr}"))?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
            (None, None) => anyhow::bail!("--unix or --tcp is required"),
        };
    let upstream = std::thread::spawn(move || pump(std::io::stdin().lock(), writer));
    pump(reader, std::io::stdout().lock());
    // The target closed its side: the guest's connection ends with it.
    drop(upstream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_services::compute::vm::FORWARD_SLOTS;

    #[test]
    fn a_guest_holds_at_most_the_slots_and_a_closed_one_frees_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut held: Vec<_> = (0..FORWARD_SLOTS)
            .map(|_| take_slot(dir.path()).unwrap())
            .collect();
        let refused = take_slot(dir.path()).unwrap_err();
        assert!(
            refused.to_string().contains("connections open already"),
            "{refused}"
        );
        held.pop();
        assert!(
            take_slot(dir.path()).is_ok(),
            "a closed connection frees its slot"
        );
    }
}
