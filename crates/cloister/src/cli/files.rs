//! File flags where `-` means standard input (reading) or standard output (writing), as in
//! gcloud (`kms encrypt --plaintext-file -`).

use std::io::Read;
use std::path::Path;

use super::output;

pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The whole file, or all of standard input for `-`.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    if is_stdio(path) {
        let mut data = Vec::new();
        std::io::stdin().lock().read_to_end(&mut data)?;
        Ok(data)
    } else {
        std::fs::read(path)
    }
}

pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes the file, or standard output for `-`.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if is_stdio(path) {
        output::bytes(bytes)
    } else {
        std::fs::write(path, bytes)
    }
}

/// A reader of the file, or of standard input for `-`.
pub fn reader(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    if is_stdio(path) {
        Ok(Box::new(std::io::stdin()))
    } else {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}
