//! Host-side checks of what scenarios reported.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::plan::HostContext;
use super::report::ScenarioReport;
use super::sh;

/// The PF the simulator (`--demo`) offers as an igb (82576) NIC.
const DEMO_IGB_PF: &str = "eno49";

/// `fidelity`: the guest's `debug sysfs-manifest` of a real igb PF in each of [`LAYOUTS`]
/// (7 VFs with autoprobe on, off, one VF on vfio-pci, no VFs) must equal the simulator's
/// for the same vfpool commands, line for line.
/// Then the PF driver's answers (`vf-answers`: a fresh VF and the result of each VF setting)
/// must equal `tests/vm/scenarios/fidelity-vf.txt`, which the netlink simulator's unit test
/// replays against the simulator.
/// Last, the kernel's answers to sysfs writes (`sysfs-answers`) must equal
/// `tests/vm/scenarios/fidelity-sysfs.txt`, which `crates/host/tests/sim_fidelity.rs` replays
/// against the simulated host.
pub fn fidelity(ctx: &HostContext<'_>, report: &ScenarioReport) -> Result<()> {
    let errors: Vec<String> = [
        fidelity_manifest(ctx, report),
        golden(
            report,
            "vf-answers",
            "fidelity-vf.txt",
            VF_ANSWERS,
            "real igb",
        ),
        golden(
            report,
            "sysfs-answers",
            "fidelity-sysfs.txt",
            SYSFS_ANSWERS,
            "real kernel",
        ),
    ]
    .into_iter()
    .filter_map(|r| r.err().map(|e| format!("{e:#}")))
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("\n"))
    }
}

/// The golden file of what the real igb answers, shared with the netlink simulator's test.
const VF_ANSWERS: &str = include_str!("../../../tests/vm/scenarios/fidelity-vf.txt");
/// The golden file of the kernel's answers to sysfs writes, shared with the host simulator's
/// test.
const SYSFS_ANSWERS: &str = include_str!("../../../tests/vm/scenarios/fidelity-sysfs.txt");

/// The guest's data block `key` must equal the golden file `name` (`text`), comments and
/// blank lines left out.
fn golden(report: &ScenarioReport, key: &str, name: &str, text: &str, real: &str) -> Result<()> {
    let want: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let got: Vec<&str> = report.data(key).iter().map(String::as_str).collect();
    if got == want {
        return Ok(());
    }
    let mut diff = String::new();
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i).copied(), got.get(i).copied());
        if w != g {
            diff.push_str(&format!(
                "\n  {name}: {}\n  {real}: {}",
                w.unwrap_or("(nothing)"),
                g.unwrap_or("(nothing)")
            ));
        }
    }
    bail!("the {real} answers otherwise than {name} (and so the simulator) says:{diff}")
}

/// The layouts the guest reports manifests of, in order, each with the vfpool commands
/// (`{PF}`: the PF) that make it from the one before, replayed on the simulator.
const LAYOUTS: &[(&str, &[&str])] = &[
    ("manifest", &["nic split {PF} --vfs 7"]),
    (
        "manifest-autoprobe-off",
        &["nic restore {PF}", "nic split {PF} --vfs 7 --autoprobe off"],
    ),
    (
        "manifest-vfio",
        &[
            "nic restore {PF}",
            "nic split {PF} --vfs 7 --autoprobe on",
            "pool create fid --select {PF}",
            "lease acquire --pool fid --owner v --driver vfio-pci",
        ],
    ),
    (
        "manifest-zero",
        &["lease release v", "pool delete fid", "nic restore {PF}"],
    ),
];

fn fidelity_manifest(ctx: &HostContext<'_>, report: &ScenarioReport) -> Result<()> {
    let state = ctx.work.join("fidelity-demo-state");
    if state.exists() {
        fs::remove_dir_all(&state).with_context(|| format!("cannot remove {}", state.display()))?;
    }
    fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
    let vfpool = |args: &str| {
        let args = args.replace("{PF}", DEMO_IGB_PF);
        sh::stdout(
            Command::new(ctx.vfpool)
                .arg("--demo")
                .arg("--state")
                .arg(&state)
                .args(args.split_whitespace()),
        )
    };
    let mut errors = Vec::new();
    for (key, steps) in LAYOUTS {
        for step in *steps {
            vfpool(step).with_context(|| format!("{key}: `vfpool --demo {step}` failed"))?;
        }
        let guest = trim_end(report.data(key));
        if guest.is_empty() {
            errors.push(format!("the guest sent no {key}"));
            continue;
        }
        let host = vfpool(&format!("debug sysfs-manifest {DEMO_IGB_PF}"))?;
        let host: Vec<String> = host.lines().map(str::to_owned).collect();
        let host = trim_end(&host);
        if host == guest {
            continue;
        }
        let simulator = ctx.work.join(format!("fidelity-{key}-simulator"));
        let kernel = ctx.work.join(format!("fidelity-{key}-real-kernel"));
        write_lines(&simulator, host)?;
        write_lines(&kernel, guest)?;
        let diff = Command::new("diff")
            .args([
                "-u",
                "--label",
                "simulator (vfpool --demo)",
                "--label",
                "real kernel (guest)",
            ])
            .arg(&simulator)
            .arg(&kernel)
            .output()
            .context("cannot run diff")?;
        errors.push(format!(
            "{key}: the real kernel's sysfs manifest differs from the simulator's:\n{}",
            String::from_utf8_lossy(&diff.stdout).trim_end()
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("\n"))
    }
}

fn trim_end(lines: &[String]) -> &[String] {
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    &lines[..end]
}

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
