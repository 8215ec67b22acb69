//! The VM driver's guest side: the image (`image.rs`), its PID 1 (`init.rs`), and the
//! per-connection forwarder the platform's QEMU runs for the guest (`forward.rs`).

pub mod forward;
pub mod image;
pub mod init;
