//! README.md works verbatim: every ```sh block is marked, on the line before its fence, either
//! `<!-- readme: run -->` or `<!-- readme: not run (WHY) -->`; the run blocks are run in
//! order, as one bash script (so a variable or file one block makes serves the next), against
//! a fresh server, with the `cloister` binary on PATH and a temp HOME, config and working
//! directory. The server comes from the test, so the block that would start one is "not run";
//! it exports `ENDPOINT` and `DATA_DIR`, which the test sets the same way.

mod support;

use std::process::Command;

use support::{BIN, Server};

const RUN: &str = "<!-- readme: run -->";
const NOT_RUN: &str = "<!-- readme: not run (";

/// A ```sh block of README.md: its first line's number and its text.
#[derive(Debug)]
struct Block {
    line: usize,
    text: String,
    run: bool,
}

/// Every ```sh block; a block without a marker is an error naming its line.
fn blocks(readme: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let marker = i.checked_sub(1).map(|p| lines[p].trim()).unwrap_or("");
        let run = if marker == RUN {
            true
        } else if marker.starts_with(NOT_RUN) && marker.ends_with(") -->") {
            false
        } else {
            return Err(format!(
                "README.md line {}: a ```sh block needs `{RUN}` or `{NOT_RUN}WHY) -->` on the line before it",
                i + 1
            ));
        };
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .ok_or_else(|| format!("README.md line {}: the block is not closed", i + 1))?;
        out.push(Block {
            line: i + 1,
            text: lines[i + 1..end].join("\n"),
            run,
        });
        i = end + 1;
    }
    Ok(out)
}

#[test]
fn every_block_is_marked_and_a_block_without_a_marker_is_refused() {
    let unmarked = "text\n```sh\necho hi\n```\n";
    assert!(blocks(unmarked).unwrap_err().contains("line 2"));
    let no_reason = "<!-- readme: not run -->\n```sh\necho hi\n```\n";
    assert!(blocks(no_reason).is_err());
    let marked = format!("{RUN}\n```sh\necho hi\n```\n{NOT_RUN}needs a VM) -->\n```sh\nx\n```\n");
    let found = blocks(&marked).unwrap();
    assert_eq!(
        found.iter().map(|b| (b.line, b.run)).collect::<Vec<_>>(),
        [(2, true), (6, false)]
    );
}

#[test]
fn the_readme_runs_as_written_on_a_fresh_server() {
    let root = support::crate_dir().join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = blocks(&readme).unwrap_or_else(|e| panic!("{e}"));
    // The README opens with exactly its two set-up commands.
    let first = blocks.first().expect("README.md has blocks");
    assert_eq!(
        first
            .text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .collect::<Vec<_>>(),
        ["bash scripts/demo.sh", "bash scripts/test.sh"],
        "README.md's first block"
    );
    assert!(
        !first.run,
        "the set-up commands are what the test suite itself runs"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let work = dir.path().join("work");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut script = String::from("set -euo pipefail\n");
    let mut ran = 0;
    for b in blocks.iter().filter(|b| b.run) {
        script.push_str(&format!(
            "echo '>>> README.md block at line {}' >&2\n{}\n",
            b.line, b.text
        ));
        ran += 1;
    }
    assert!(ran > 0, "no block is marked to run");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("CLOISTER_CONFIG_DIR", home.join(".config/cloister"))
        .env("ENDPOINT", server.endpoint())
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed_in = stderr
        .lines()
        .rfind(|l| l.starts_with(">>> README.md block"))
        .unwrap_or("before the first block");
    assert!(
        out.status.success(),
        "{failed_in} failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    server.stop();
}
