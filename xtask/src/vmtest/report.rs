//! What a guest reported on its result port (the second serial port, `/dev/ttyS1`, which
//! carries nothing but these lines, unlike the console):
//!
//! ```text
//! VMTEST READY <config> <kernel release>
//! VMTEST UNSYNCED absent|present|no-state-disk  (state disk: the power cut's control file)
//! VMTEST BEGIN <scenario>
//! VMTEST DATA <scenario> <key>: <line>      (any number, in order, per key)
//! VMTEST PASS <scenario>
//! VMTEST FAIL <scenario>: <reason>
//! VMTEST POWERCUT <how>                      (the boot is about to cut its power)
//! VMTEST DONE
//! ```

use std::collections::BTreeMap;

/// Everything one boot reported.
#[derive(Debug, Default)]
pub struct GuestReport {
    /// `<config> <kernel release>` once `/init` got going.
    pub ready: Option<String>,
    /// `/init` ran through its scenario list and is about to power off.
    pub done: bool,
    /// `/init` is about to cut the power (sysrq b) after writing an unsynced control file.
    pub power_cut: Option<String>,
    /// Whether the previous boot's unsynced control file is on the state disk.
    pub unsynced: Option<String>,
    pub scenarios: BTreeMap<String, ScenarioReport>,
}

/// One scenario's lines.
#[derive(Debug, Default)]
pub struct ScenarioReport {
    pub began: bool,
    /// `None` until the scenario reports PASS (`Ok`) or FAIL (`Err(reason)`).
    pub verdict: Option<Result<(), String>>,
    /// Data blocks for host-side checks, by key.
    pub data: BTreeMap<String, Vec<String>>,
}

impl ScenarioReport {
    /// The lines of data block `key`, empty when the guest sent none.
    pub fn data(&self, key: &str) -> &[String] {
        self.data.get(key).map_or(&[], Vec::as_slice)
    }
}

pub fn parse(text: &str) -> GuestReport {
    let mut report = GuestReport::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        // Tolerate noise before the marker (a serial port may start with a stray byte).
        let Some(at) = line.find("VMTEST ") else {
            continue;
        };
        let rest = &line[at + "VMTEST ".len()..];
        let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "READY" => report.ready = Some(rest.to_owned()),
            "DONE" => report.done = true,
            "POWERCUT" => report.power_cut = Some(rest.to_owned()),
            "UNSYNCED" => report.unsynced = Some(rest.to_owned()),
            "BEGIN" => report.scenario(rest).began = true,
            "PASS" => report.scenario(rest).verdict = Some(Ok(())),
            "FAIL" => {
                let (name, reason) = rest.split_once(": ").unwrap_or((rest, "no reason given"));
                report.scenario(name).verdict = Some(Err(reason.to_owned()));
            }
            "DATA" => {
                let Some((name, rest)) = rest.split_once(' ') else {
                    continue;
                };
                let Some((key, value)) = rest
                    .split_once(": ")
                    .or_else(|| Some((rest.strip_suffix(':')?, "")))
                else {
                    continue;
                };
                report
                    .scenario(name)
                    .data
                    .entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
            _ => {}
        }
    }
    report
}

impl GuestReport {
    fn scenario(&mut self, name: &str) -> &mut ScenarioReport {
        self.scenarios.entry(name.trim().to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol() {
        let text = "\u{0}VMTEST READY iommu 6.1.0-56-amd64\r\n\
                    VMTEST UNSYNCED absent\r\n\
                    VMTEST BEGIN a\r\n\
                    VMTEST DATA a manifest: x=1\r\n\
                    VMTEST DATA a manifest:\r\n\
                    VMTEST DATA a manifest: y=2: z\r\n\
                    VMTEST PASS a\r\n\
                    VMTEST BEGIN b\r\n\
                    VMTEST FAIL b: numvfs: got 3, want 7\r\n\
                    VMTEST BEGIN c\r\n\
                    VMTEST POWERCUT sysrq b, control file written\r\n";
        let report = parse(text);
        assert_eq!(report.ready.as_deref(), Some("iommu 6.1.0-56-amd64"));
        assert!(!report.done);
        assert_eq!(report.unsynced.as_deref(), Some("absent"));
        assert_eq!(
            report.power_cut.as_deref(),
            Some("sysrq b, control file written")
        );
        assert_eq!(report.scenarios["a"].verdict, Some(Ok(())));
        assert_eq!(
            report.scenarios["a"].data("manifest"),
            ["x=1", "", "y=2: z"]
        );
        assert_eq!(
            report.scenarios["b"].verdict,
            Some(Err("numvfs: got 3, want 7".to_owned()))
        );
        assert!(report.scenarios["c"].began && report.scenarios["c"].verdict.is_none());
    }
}
