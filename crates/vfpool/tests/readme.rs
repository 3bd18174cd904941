//! Every example in README.md runs as written (issue 9: "the README's pool walkthrough
//! fails as written for a newcomer").
//!
//! Each fenced code block of the README is a shell session a reader would paste: it is run
//! by `bash -euo pipefail` with the built `vfpool` first on `PATH`, in a fresh working and
//! temporary directory, and any command that fails fails the test. A block that must not
//! run here (it builds with cargo, or is the whole test suite) is preceded by a line
//! `<!-- readme-test: skip (WHY) -->`, which a reader of the README's source sees. Every
//! `vfpool` command of a block that runs must be on the demo host (`--demo`): this test
//! runs as root and must never change the real host.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;

/// One fenced block of a Markdown file.
#[derive(Debug)]
struct Block {
    /// 1-based line of its opening fence.
    line: usize,
    /// The reason it is not run, when it is marked so.
    skip: Option<String>,
    text: String,
}

const SKIP: &str = "<!-- readme-test: skip";

/// The fenced blocks of `md`, each with the skip marker on the line before it, if any. A
/// marker that is not followed by a block, or gives no reason, is an error.
fn blocks(md: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut open: Option<Block> = None;
    let mut prev_blank = true;
    for (i, line) in md.lines().enumerate() {
        let n = i + 1;
        let blank = std::mem::replace(&mut prev_blank, line.trim().is_empty());
        if let Some(b) = &mut open {
            if line.trim_start().starts_with("```") {
                out.push(open.take().unwrap());
            } else {
                b.text.push_str(line);
                b.text.push('\n');
            }
            continue;
        }
        if line.trim_start().starts_with("```") {
            open = Some(Block {
                line: n,
                skip: pending.take().map(|(_, why)| why),
                text: String::new(),
            });
            continue;
        }
        if let Some((at, _)) = pending.take() {
            return Err(format!(
                "README.md:{at}: a skip marker must be right before a code block"
            ));
        }
        // An indented code block would escape this test: examples are fenced.
        if blank && (line.starts_with("    ") || line.starts_with('\t')) {
            return Err(format!(
                "README.md:{n}: an indented code block; fence it (```sh) so that it is run"
            ));
        }
        if let Some(rest) = line.trim().strip_prefix(SKIP) {
            let why = rest
                .trim()
                .strip_suffix("-->")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
                .filter(|r| !r.trim().is_empty());
            match why {
                Some(why) => pending = Some((n, why.to_owned())),
                None => {
                    return Err(format!(
                        "README.md:{n}: write the marker as `{SKIP} (WHY) -->`"
                    ));
                }
            }
        }
    }
    if let Some(b) = open {
        return Err(format!("README.md:{}: code block never closed", b.line));
    }
    if let Some((at, _)) = pending {
        return Err(format!(
            "README.md:{at}: a skip marker must be right before a code block"
        ));
    }
    Ok(out)
}

/// The block's commands with continuation lines joined, without comments' text.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Why a block must not run here: a `vfpool` command that would act on the real host.
fn touches_real_host(text: &str) -> Option<String> {
    commands(text).into_iter().find(|c| {
        let words: Vec<&str> = c.split_whitespace().collect();
        words.iter().enumerate().any(|(i, w)| {
            *w == "vfpool"
                && (i == 0 || matches!(words[i - 1], "&&" | "||" | ";" | "|" | "$("))
                && !words.contains(&"--demo")
                // Through the daemon the block itself started (on the demo host): its
                // socket is under the block's own directory.
                && !words
                    .windows(2)
                    .any(|p| p[0] == "--api" && p[1].starts_with("unix:$"))
        }) || (words.iter().any(|w| w.trim_end_matches(';') == "vfpool-cni")
            // The CNI plugin has no --demo: it must be pointed at a simulated tree.
            && !words.iter().any(|w| w.starts_with("VFPOOL_SYSFS_ROOT=")))
    })
}

fn run_block(bin_dir: &Path, b: &Block) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("block.sh");
    std::fs::write(&script, &b.text).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-x"])
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("TMPDIR", &tmp)
        .env_remove("VFPOOL_STATE")
        .env_remove("VFPOOL_SYSFS_ROOT")
        .env_remove("VFPOOL_PROC_ROOT")
        .env_remove("VFPOOL_FAULT")
        .env("VFPOOL_LOG", "warn")
        .output()
        .unwrap();
    if o.status.success() {
        return Ok(());
    }
    Err(format!(
        "the README block at line {} fails as written ({}):\n{}\n--- stdout\n{}--- stderr (bash -x)\n{}",
        b.line,
        o.status,
        b.text,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ))
}

#[test]
fn every_readme_example_runs_as_written() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let md = std::fs::read_to_string(&readme).unwrap();
    let all = blocks(&md).unwrap_or_else(|e| panic!("{e}"));
    let bin = Path::new(env!("CARGO_BIN_EXE_vfpool"));
    let bin_dir = bin.parent().unwrap();
    // The README runs the CNI plugin too: `cargo test --workspace` builds it beside
    // `vfpool`; a test run of this package alone builds it here (a no-op when it is fresh,
    // and never a stale binary from an earlier build).
    if md.contains("vfpool-cni") {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "vfpool-cni", "--bin", "vfpool-cni"])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot build vfpool-cni for the README's examples"
        );
    }
    let mut ran = 0;
    let mut failures = Vec::new();
    for b in &all {
        if let Some(why) = &b.skip {
            eprintln!("README.md:{}: not run ({why})", b.line);
            continue;
        }
        if let Some(c) = touches_real_host(&b.text) {
            failures.push(format!(
                "README.md:{}: `{}` has no --demo: it would change the real host, so this \
                 test does not run it (put the example on the demo host, or mark it `{SKIP} (WHY) -->`)",
                b.line,
                c.trim()
            ));
            continue;
        }
        ran += 1;
        if let Err(e) = run_block(bin_dir, b) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The walkthroughs are there to be run: finding none means the parser lost them.
    assert!(ran >= 2, "only {ran} README blocks found to run: {all:#?}");
}

#[test]
fn a_cni_plugin_call_without_a_simulated_sysfs_is_refused() {
    assert!(touches_real_host("echo {} | CNI_COMMAND=ADD vfpool-cni").is_some());
    assert!(
        touches_real_host(
            "echo {} | VFPOOL_SYSFS_ROOT=$S/demo-host/sys CNI_COMMAND=ADD vfpool-cni"
        )
        .is_none()
    );
}

#[test]
fn the_parser_finds_blocks_markers_and_refuses_stray_markers() {
    let md = "text\n\n<!-- readme-test: skip (builds) -->\n```sh\ncargo build\n```\n\n```sh\nvfpool --demo nic list\n```\n";
    let b = blocks(md).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].skip.as_deref(), Some("builds"));
    assert_eq!(b[1].skip, None);
    assert_eq!(b[1].line, 8);
    assert_eq!(b[1].text, "vfpool --demo nic list\n");
    let e = blocks("<!-- readme-test: skip (x) -->\n\n```sh\nls\n```\n").unwrap_err();
    assert!(e.contains("README.md:1:"), "{e}");
    let e = blocks("<!-- readme-test: skip -->\n```sh\nls\n```\n").unwrap_err();
    assert!(e.contains("(WHY)"), "{e}");
    let e = blocks("```sh\nls\n").unwrap_err();
    assert!(e.contains("never closed"), "{e}");
    let e = blocks("text\n\n    vfpool nic list\n").unwrap_err();
    assert!(e.contains("README.md:3: an indented code block"), "{e}");
    // A list item's continuation is not a code block.
    assert!(blocks("- item\n  more\n").unwrap().is_empty());
}

#[test]
fn a_vfpool_command_off_the_demo_host_is_caught() {
    assert_eq!(
        touches_real_host("vfpool --demo --state $S nic list\n"),
        None
    );
    assert_eq!(
        touches_real_host(
            "S=$(mktemp -d)\nvfpool --demo --state $S lease acquire \\\n    --pool igb\n"
        ),
        None
    );
    assert!(touches_real_host("vfpool nic split eno49 --vfs 7\n").is_some());
    assert!(touches_real_host("true && vfpool lease gc\n").is_some());
    assert!(touches_real_host("vfpool lease acquire --pool p \\\n    --owner x\n").is_some());
    assert_eq!(
        touches_real_host("vfpool --api unix:$S/api.sock nic list\n"),
        None
    );
    assert!(touches_real_host("vfpool --api unix:/run/vfpool/api.sock nic list\n").is_some());
    assert!(touches_real_host("vfpool --api http://127.0.0.1:7878 nic list\n").is_some());
}
