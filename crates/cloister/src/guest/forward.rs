//! `cloister forward`: one connection of a guest, on stdin/stdout (QEMU's slirp runs this per
//! connection a guest opens to a `guestfwd` address: its `tcp:` form serves only the first
//! connection), copied both ways to the instance's metadata socket or to the API.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ForwardArgs {
    /// A unix socket (the instance's metadata server).
    #[arg(long)]
    unix: Option<PathBuf>,
    /// A TCP address (the API), HOST:PORT.
    #[arg(long)]
    tcp: Option<String>,
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
