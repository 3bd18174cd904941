//! Options, the sequence of phases, and the final report.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::binary::{self, Flavor};
use super::host::{self, Apt};
use super::plan::{self, CONFIGS, Config, HostContext, SCENARIOS};
use super::qemu::{Boot, Ending};
use super::report::{self, GuestReport};
use super::{initramfs, kernel, sh};

const HELP: &str = "\
usage: cargo xtask vmtest [options]

Boots Debian's kernel under QEMU (TCG) with emulated Intel 82576 (igb) SR-IOV NICs and runs
vfpool's real-kernel scenarios (tests/vm/scenarios/*.sh) in each machine configuration, all
configurations in parallel. Needs root on Debian (apt-get installs QEMU and fetches the
guest's packages on first use). Everything is kept under target/vmtest/; logs of the last run
are in target/vmtest/run/<config>/boot<N>/.

options:
  --config NAME             run only this configuration (repeatable)
  --scenario NAME           run only this scenario (repeatable); on-demand ones (--list) only so
  --timeout SECS            deadline for each boot (default 420)
  --scenario-timeout SECS   deadline for each scenario inside the guest (default 90)
  --static gnu|musl         how vfpool and vfpool-cni are linked statically (default gnu: glibc +crt-static)
  --no-install              never run apt-get or rustup; fail if something is missing
  --list                    list configurations and scenarios

environment:
  VFPOOL_VMTEST_KERNEL      pin the guest kernel package (e.g. linux-image-6.1.0-56-amd64);
                            otherwise the cached one, else what linux-image-amd64 depends on
";

#[derive(Debug)]
struct Options {
    configs: Vec<String>,
    scenarios: Vec<String>,
    timeout: Duration,
    scenario_timeout: u64,
    flavor: Flavor,
    no_install: bool,
    list: bool,
}

impl Options {
    fn parse(args: Vec<String>) -> Result<Option<Self>> {
        let mut opts = Options {
            configs: Vec::new(),
            scenarios: Vec::new(),
            timeout: Duration::from_secs(420),
            scenario_timeout: 90,
            flavor: Flavor::GnuStatic,
            no_install: false,
            list: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .with_context(|| format!("{flag} needs a value"))
            };
            let secs = |v: String| {
                v.parse::<u64>()
                    .with_context(|| format!("{flag}: `{v}` is not a number of seconds"))
            };
            match flag.as_str() {
                "-h" | "--help" => {
                    print!("{HELP}");
                    return Ok(None);
                }
                "--config" => opts.configs.push(value()?),
                "--scenario" => opts.scenarios.push(value()?),
                "--timeout" => opts.timeout = Duration::from_secs(secs(value()?)?),
                "--scenario-timeout" => opts.scenario_timeout = secs(value()?)?,
                "--static" => opts.flavor = Flavor::parse(&value()?)?,
                "--no-install" => opts.no_install = true,
                "--list" => opts.list = true,
                _ => bail!("unknown option `{arg}`\n\n{HELP}"),
            }
        }
        for name in &opts.configs {
            if !CONFIGS.iter().any(|c| c.name == name) {
                bail!("unknown config `{name}` (see --list)");
            }
        }
        for name in &opts.scenarios {
            if plan::scenario(name).is_none() {
                bail!("unknown scenario `{name}` (see --list)");
            }
        }
        Ok(Some(opts))
    }

    /// The boots of each selected config, with only the selected scenarios.
    fn selection(&self) -> Vec<(&'static Config, Vec<Vec<&'static str>>)> {
        CONFIGS
            .iter()
            .filter(|c| self.configs.is_empty() || self.configs.iter().any(|n| n == c.name))
            .map(|c| {
                let named = |s: &&str| self.scenarios.iter().any(|n| n == s);
                let mut boots = c
                    .boots
                    .iter()
                    .map(|boot| {
                        boot.iter()
                            .copied()
                            .filter(|s| self.scenarios.is_empty() || named(s))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>();
                // On-demand scenarios only when named, after the last boot's others.
                if let Some(last) = boots.last_mut() {
                    last.extend(c.on_demand.iter().copied().filter(named));
                }
                (c, boots)
            })
            .filter(|(_, boots)| boots.iter().any(|b| !b.is_empty()))
            .collect()
    }
}

pub fn main(args: Vec<String>) -> Result<ExitCode> {
    let Some(opts) = Options::parse(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if opts.list {
        list();
        return Ok(ExitCode::SUCCESS);
    }
    let selection = opts.selection();
    if selection.is_empty() {
        bail!("no config runs any of the selected scenarios");
    }
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf();
    let cache = root.join("target/vmtest");
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let mut apt = Apt::new(opts.no_install);

    let qemu_version = phase("host prerequisites", || {
        host::ensure_tools(&mut apt)?;
        host::ensure_qemu(&mut apt)
    })?;
    let (guest_kernel, busybox) = phase("guest kernel and busybox", || {
        let debs = kernel::fetch(&mut apt, &cache)?;
        Ok((
            kernel::unpack_kernel(&debs.kernel, &cache)?,
            kernel::unpack_busybox(&debs.busybox, &cache)?,
        ))
    })?;
    let binaries = phase("static vfpool and vfpool-cni", || {
        binary::build(&root, &cache, opts.flavor, &mut apt)
    })?;
    let vfpool = &binaries.vfpool;
    let initrd = cache.join("initrd.gz");
    let initrd_bytes = phase("initramfs", || {
        let inputs = initramfs::Inputs {
            busybox: &busybox,
            kernel: &guest_kernel,
            vfpool,
            vfpool_cni: &binaries.cni,
            scripts: &root.join("tests/vm"),
        };
        initramfs::build(&inputs, &cache.join("initramfs-root"), &initrd)
    })?;
    let versions = format!(
        "qemu: {qemu_version}\nguest kernel: {}\nbusybox: {}\nvfpool: {} ({:?})\nvfpool-cni: {}\ninitrd.gz: {initrd_bytes} bytes\n",
        guest_kernel.package,
        busybox.display(),
        vfpool.display(),
        opts.flavor,
        binaries.cni.display(),
    );
    eprint!(
        "{}",
        versions
            .lines()
            .map(|l| format!("vmtest: {l}\n"))
            .collect::<String>()
    );
    fs::write(cache.join("versions.txt"), &versions).context("cannot write versions.txt")?;

    let boots_started = Instant::now();
    eprintln!(
        "vmtest: booting {} in parallel (TCG; deadline {} s each)",
        selection
            .iter()
            .map(|(c, _)| c.name)
            .collect::<Vec<_>>()
            .join(", "),
        opts.timeout.as_secs()
    );
    let outcomes: Vec<Vec<Outcome>> = thread::scope(|scope| {
        let handles: Vec<_> = selection
            .iter()
            .map(|(config, boots)| {
                let run = ConfigRun {
                    config,
                    boots,
                    cache: &cache,
                    kernel: &guest_kernel.vmlinuz,
                    initrd: &initrd,
                    vfpool,
                    timeout: opts.timeout,
                    scenario_timeout: opts.scenario_timeout,
                };
                scope.spawn(move || run.run())
            })
            .collect();
        handles
            .into_iter()
            .zip(&selection)
            .map(|(handle, (config, _))| match handle.join() {
                Ok(Ok(outcomes)) => outcomes,
                Ok(Err(err)) => vec![Outcome::fail(
                    format!("{}/boot", config.name),
                    format!("{err:#}"),
                )],
                Err(_) => vec![Outcome::fail(
                    format!("{}/boot", config.name),
                    "the harness thread panicked".into(),
                )],
            })
            .collect()
    });
    eprintln!(
        "vmtest: boots done in {:.1} s; whole run {:.1} s",
        boots_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let (mut passed, mut failed) = (0, 0);
    for outcome in outcomes.iter().flatten() {
        match &outcome.result {
            Ok(()) => {
                passed += 1;
                println!("PASS {}", outcome.name);
            }
            Err(reason) => {
                failed += 1;
                let mut lines = reason.lines();
                println!(
                    "FAIL {}: {}",
                    outcome.name,
                    lines.next().unwrap_or_default()
                );
                for line in lines {
                    println!("    {line}");
                }
                if let Some(log) = outcome.log.as_ref().filter(|log| log.lines.is_empty()) {
                    println!("    --- guest log ({}): nothing ---", log.source);
                } else if let Some(log) = &outcome.log {
                    println!("    --- guest log ({}) ---", log.source);
                    for line in &log.lines {
                        println!("    | {line}");
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn list() {
    println!("configs:");
    for c in CONFIGS {
        println!("  {:<10} {}", c.name, c.about);
        for (i, boot) in c.boots.iter().enumerate() {
            println!("  {:<10}   boot {}: {}", "", i + 1, boot.join(" "));
        }
        if !c.on_demand.is_empty() {
            println!(
                "  {:<10}   only with --scenario: {}",
                "",
                c.on_demand.join(" ")
            );
        }
    }
    println!("scenarios:");
    for s in SCENARIOS {
        let host = if s.host_check.is_some() {
            " (+ host check)"
        } else {
            ""
        };
        println!("  {:<14} {}{host}", s.name, s.about);
    }
}

/// Runs `f`, telling how long it took.
fn phase<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let value = f().with_context(|| format!("vmtest phase `{name}`"))?;
    eprintln!("vmtest: {name}: {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

/// One reported line.
#[derive(Debug)]
struct Outcome {
    /// `config/scenario`, or `config/bootN` for a problem with the boot itself.
    name: String,
    result: Result<(), String>,
    log: Option<LogTail>,
}

#[derive(Debug)]
struct LogTail {
    source: String,
    lines: Vec<String>,
}

impl Outcome {
    fn fail(name: String, reason: String) -> Self {
        Self {
            name,
            result: Err(reason),
            log: None,
        }
    }
}

/// Lines of guest log shown with a failure.
const TAIL_LINES: usize = 40;

struct ConfigRun<'a> {
    config: &'static Config,
    boots: &'a [Vec<&'static str>],
    cache: &'a Path,
    kernel: &'a Path,
    initrd: &'a Path,
    vfpool: &'a Path,
    timeout: Duration,
    scenario_timeout: u64,
}

impl ConfigRun<'_> {
    fn run(&self) -> Result<Vec<Outcome>> {
        let work = self.cache.join("run").join(self.config.name);
        if work.exists() {
            fs::remove_dir_all(&work)
                .with_context(|| format!("cannot remove {}", work.display()))?;
        }
        fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        let disk = work.join("state.img");
        if self.config.state_disk {
            make_state_disk(&disk)?;
        }
        let mut outcomes = Vec::new();
        // Whether the boot before this one cut the power.
        let mut cut_before = false;
        for (i, scenarios) in self.boots.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let boot = Boot {
                config: self.config,
                index: i + 1,
                scenarios: scenarios.clone(),
                kernel: self.kernel,
                initrd: self.initrd,
                dir: work.join(format!("boot{}", i + 1)),
                timeout: self.timeout,
                scenario_timeout: self.scenario_timeout,
                state_disk: self.config.state_disk.then_some(disk.as_path()),
            };
            let finished = boot.run()?;
            eprintln!(
                "vmtest: {} boot {} ended after {:.1} s: {}",
                self.config.name,
                boot.index,
                finished.elapsed.as_secs_f64(),
                match &finished.ending {
                    Ending::Exited(status) => status.to_string(),
                    Ending::TimedOut => "deadline reached, killed".to_owned(),
                }
            );
            let results = read_lossy(&boot.results_log());
            let console = read_lossy(&boot.console_log());
            let report = report::parse(&results);
            let problem = boot_problem(&finished.ending, &report, self.timeout).or_else(|| {
                power_cut_problem(self.config, i, self.boots.len(), cut_before, &report)
            });
            cut_before = report.power_cut.is_some();
            for name in &boot.scenarios {
                outcomes.push(self.judge(
                    name,
                    &report,
                    problem.as_deref(),
                    &console,
                    &work,
                    &boot,
                ));
            }
            if let Some(problem) = problem {
                outcomes.push(Outcome {
                    name: format!("{}/boot{}", self.config.name, boot.index),
                    result: Err(problem),
                    log: Some(LogTail {
                        source: boot.console_log().display().to_string(),
                        lines: tail_lines(&console, TAIL_LINES),
                    }),
                });
            }
        }
        Ok(outcomes)
    }

    fn judge(
        &self,
        name: &str,
        report: &GuestReport,
        boot_problem: Option<&str>,
        console: &str,
        work: &Path,
        boot: &Boot<'_>,
    ) -> Outcome {
        let full_name = format!("{}/{name}", self.config.name);
        let scenario = report.scenarios.get(name);
        let result = match scenario.and_then(|s| s.verdict.clone()) {
            Some(Ok(())) => match (plan::scenario(name).and_then(|s| s.host_check), scenario) {
                (Some(check), Some(scenario)) => {
                    let ctx = HostContext {
                        vfpool: self.vfpool,
                        work,
                    };
                    check(&ctx, scenario).map_err(|err| format!("host check: {err:#}"))
                }
                _ => Ok(()),
            },
            Some(Err(reason)) => Err(reason),
            None if scenario.is_some_and(|s| s.began) => Err(format!(
                "started but never reported ({})",
                boot_problem.unwrap_or("the guest moved on")
            )),
            None => Err(format!(
                "did not run ({})",
                boot_problem.unwrap_or("the guest never started it")
            )),
        };
        let log = result.is_err().then(|| LogTail {
            source: boot.console_log().display().to_string(),
            lines: scenario_log(console, name),
        });
        Outcome {
            name: full_name,
            result,
            log,
        }
    }
}

/// What went wrong with a boot as a whole, if anything.
fn boot_problem(ending: &Ending, report: &GuestReport, timeout: Duration) -> Option<String> {
    match ending {
        Ending::TimedOut => Some(format!(
            "boot deadline of {} s reached; QEMU killed",
            timeout.as_secs()
        )),
        Ending::Exited(status) if !status.success() => Some(format!("QEMU exited with {status}")),
        Ending::Exited(_) if report.ready.is_none() => {
            Some("the guest never reached /init (kernel crash?)".into())
        }
        Ending::Exited(_) if !report.done => {
            Some("the guest stopped before finishing its scenarios".into())
        }
        Ending::Exited(_) => None,
    }
}

/// What is wrong with boot `index` (from 0) of `count` as to power cuts: a config that cuts
/// the power between boots must see every boot but the last report the cut, and every boot
/// after a cut find the control file that was written without a sync right before it gone.
fn power_cut_problem(
    config: &Config,
    index: usize,
    count: usize,
    cut_before: bool,
    report: &GuestReport,
) -> Option<String> {
    if !config.power_cut_between_boots {
        return None;
    }
    if index + 1 < count {
        match report.power_cut.as_deref() {
            None => {
                return Some(
                    "the boot should have ended in a power cut (power_cut_after) but the guest reported none"
                        .into(),
                );
            }
            Some(how) if !how.contains("control file written") => {
                return Some(format!("the power cut is not proven: {how}"));
            }
            Some(_) => {}
        }
    }
    if cut_before {
        match report.unsynced.as_deref() {
            Some("absent") => {}
            Some("present") => {
                return Some(
                    "the file written without a sync right before the power cut survived it: the disk was synced, the cut is not a power cut"
                        .into(),
                );
            }
            other => {
                return Some(format!(
                    "the boot after the power cut did not report the unsynced control file ({})",
                    other.unwrap_or("no UNSYNCED line")
                ));
            }
        }
    }
    None
}

/// The console lines of one scenario (between the markers `tests/vm/init` prints), at most
/// [`TAIL_LINES`] from the end; the console's tail when the scenario never started.
fn scenario_log(console: &str, name: &str) -> Vec<String> {
    let begin = format!("=== vmtest: begin {name}");
    let end = format!("=== vmtest: end {name}");
    let lines: Vec<&str> = console.lines().collect();
    let Some(start) = lines.iter().rposition(|l| l.contains(&begin)) else {
        return tail_lines(console, TAIL_LINES);
    };
    let stop = lines[start..]
        .iter()
        .position(|l| l.contains(&end))
        .map_or(lines.len(), |i| start + i + 1);
    let section = &lines[start..stop];
    section[section.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// A log as text, without the carriage returns of the serial line; empty if missing.
fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\r', ""))
        .unwrap_or_default()
}

/// A fresh 64 MiB raw disk with an empty ext4 file system, for vfpool's state directory.
fn make_state_disk(path: &Path) -> Result<()> {
    sh::run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "raw"])
            .arg(path)
            .arg("64M"),
    )?;
    sh::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "vfpool-state"])
            .arg(path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reboot_config() -> &'static Config {
        CONFIGS
            .iter()
            .find(|c| c.power_cut_between_boots)
            .expect("a config with a power cut")
    }

    fn selected(args: &[&str]) -> Vec<(&'static str, Vec<Vec<&'static str>>)> {
        let opts = Options::parse(args.iter().map(|a| a.to_string()).collect())
            .unwrap()
            .unwrap();
        opts.selection()
            .into_iter()
            .map(|(c, boots)| (c.name, boots))
            .collect()
    }

    #[test]
    fn on_demand_scenarios_run_only_when_named() {
        let everything = selected(&[]);
        assert!(
            everything
                .iter()
                .all(|(_, boots)| boots.iter().flatten().all(|s| *s != "cni-bench")),
            "{everything:?}"
        );
        assert_eq!(
            selected(&[
                "--config",
                "noiommu",
                "--scenario",
                "cni",
                "--scenario",
                "cni-bench"
            ]),
            vec![("noiommu", vec![vec!["cni", "cni-bench"]])]
        );
        assert_eq!(
            selected(&["--scenario", "cni-bench"]),
            vec![("noiommu", vec![vec!["cni-bench"]])]
        );
    }

    #[test]
    fn a_power_cut_must_be_reported_and_proven() {
        let c = reboot_config();
        let cut = report::parse("VMTEST POWERCUT sysrq b, control file written\n");
        let none = report::parse("VMTEST DONE\n");
        let unwritten = report::parse("VMTEST POWERCUT sysrq b, control file NOT written\n");
        assert_eq!(power_cut_problem(c, 0, 2, false, &cut), None);
        assert!(power_cut_problem(c, 0, 2, false, &none).is_some());
        assert!(power_cut_problem(c, 0, 2, false, &unwritten).is_some());
        // The last boot needs no cut.
        assert_eq!(power_cut_problem(c, 1, 2, false, &none), None);

        let gone = report::parse("VMTEST UNSYNCED absent\n");
        let kept = report::parse("VMTEST UNSYNCED present\n");
        assert_eq!(power_cut_problem(c, 1, 2, true, &gone), None);
        assert!(power_cut_problem(c, 1, 2, true, &kept).is_some());
        assert!(power_cut_problem(c, 1, 2, true, &none).is_some());
        // A config without cuts judges nothing.
        let plain = CONFIGS.iter().find(|c| !c.power_cut_between_boots).unwrap();
        assert_eq!(power_cut_problem(plain, 0, 1, true, &kept), None);
    }
}
