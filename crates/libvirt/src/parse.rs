//! Reading a domain's XML back: its interfaces, the VFs it passes through (hostdev
//! interfaces and plain PCI hostdevs), its MACs. Used by the libvirt hook, which gets the domain's XML on stdin; the XML may be a
//! `<domain>` or libvirt's status XML (`<domstatus>` around it): every `<devices>`'s
//! `<interface>` is read.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use vfpool_model::{MacAddr, PciAddr};

/// Why a domain's XML could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML.
    #[error("domain XML is not well-formed at byte {position}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    /// The document ended inside an element.
    #[error("domain XML ends inside <{element}>")]
    Truncated { element: String },
    /// An interface's attribute holds something libvirt would not have written.
    #[error("interface {index}: invalid {field} '{value}'")]
    BadValue {
        index: usize,
        field: &'static str,
        value: String,
    },
    /// A hostdev interface without its `<source><address type="pci" .../></source>`.
    #[error("interface {index}: hostdev interface without a PCI source address")]
    NoPciAddress { index: usize },
    /// A PCI `<hostdev>`'s source address holds something libvirt would not have written.
    #[error("pci hostdev {index}: invalid {field} '{value}'")]
    HostdevBadValue {
        index: usize,
        field: &'static str,
        value: String,
    },
    /// A `<hostdev mode="subsystem" type="pci">` without its `<source><address/></source>`.
    #[error("pci hostdev {index}: no source address")]
    HostdevNoPciAddress { index: usize },
}

/// One `<interface>` of a domain, as far as vfpool needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInterface {
    pub kind: InterfaceKind,
    /// `<mac address>`, when given.
    pub mac: Option<MacAddr>,
}

/// What an interface is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceKind {
    /// `type="hostdev"`: the PCI function passed through.
    Hostdev(PciAddr),
    /// `type="direct"` (macvtap) on `dev`.
    Direct { dev: Option<String> },
    /// `type="bridge"` on `bridge`.
    Bridge { bridge: Option<String> },
    /// Any other type (`network`, `user`, `vhostuser`...), named.
    Other(String),
}

/// The PCI functions a domain passes through: its hostdev interfaces' (in document order),
/// then its plain `<hostdev mode="subsystem" type="pci">`s' ([`pci_hostdevs_of`]). A VF
/// named twice is listed twice, as libvirt keeps it (and fails only at start).
pub fn vf_addresses_of(xml: &str) -> Result<Vec<PciAddr>, ParseError> {
    let mut out: Vec<PciAddr> = interfaces_of(xml)?
        .into_iter()
        .filter_map(|i| match i.kind {
            InterfaceKind::Hostdev(pci) => Some(pci),
            _ => None,
        })
        .collect();
    out.extend(pci_hostdevs_of(xml)?);
    Ok(out)
}

/// The source addresses of the `<hostdev mode="subsystem" type="pci">` directly under a
/// `<devices>` (a VF given whole without `<interface>`: libvirt does not set its MAC or
/// VLAN), in document order. Other hostdevs (USB, SCSI, `mode="capabilities"`) are not
/// read.
pub fn pci_hostdevs_of(xml: &str) -> Result<Vec<PciAddr>, ParseError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    // Inside a PCI hostdev: its source address once read.
    let mut current: Option<Option<PciAddr>> = None;
    let mut out = Vec::new();
    loop {
        let event = reader.read_event().map_err(|source| ParseError::Xml {
            position: reader.error_position(),
            source,
        })?;
        let xml_err = |source: quick_xml::Error| ParseError::Xml {
            position: reader.buffer_position(),
            source,
        };
        let (e, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => {
                let closed = stack.pop();
                if closed.as_deref() == Some("hostdev")
                    && stack.last().map(String::as_str) == Some("devices")
                    && let Some(pci) = current.take()
                {
                    let index = out.len();
                    out.push(pci.ok_or(ParseError::HostdevNoPciAddress { index })?);
                }
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        let Some(e) = e else { continue };
        let name = e.name().as_ref().to_owned();
        let parent = stack.last().map(String::as_str);
        let index = out.len();
        if name == "hostdev" && parent == Some("devices") {
            let is_pci = attr(e, "mode").map_err(|x| x.or_xml(xml_err))?.as_deref()
                == Some("subsystem")
                && attr(e, "type").map_err(|x| x.or_xml(xml_err))?.as_deref() == Some("pci");
            if is_pci {
                if empty {
                    return Err(ParseError::HostdevNoPciAddress { index });
                }
                current = Some(None);
            }
        } else if name == "address"
            && parent == Some("source")
            && stack.len() >= 2
            && stack[stack.len() - 2] == "hostdev"
            && let Some(pci) = current.as_mut()
        {
            let bad = |field: &'static str, value: &str| {
                OpenError::Parse(ParseError::HostdevBadValue {
                    index,
                    field,
                    value: value.to_owned(),
                })
            };
            *pci = Some(pci_address(e, bad).map_err(|x| x.or_xml(xml_err))?);
        }
        if !empty {
            stack.push(name);
        }
    }
    if let Some(element) = stack.pop() {
        return Err(ParseError::Truncated { element });
    }
    Ok(out)
}

/// The MACs of a domain's interfaces that give one, in document order.
pub fn macs_of(xml: &str) -> Result<Vec<MacAddr>, ParseError> {
    Ok(interfaces_of(xml)?
        .into_iter()
        .filter_map(|i| i.mac)
        .collect())
}

/// An interface being read.
#[derive(Default)]
struct Partial {
    kind: String,
    mac: Option<MacAddr>,
    pci: Option<PciAddr>,
    dev: Option<String>,
    bridge: Option<String>,
}

impl Partial {
    fn finish(self, index: usize) -> Result<DomainInterface, ParseError> {
        let kind = match self.kind.as_str() {
            "hostdev" => {
                InterfaceKind::Hostdev(self.pci.ok_or(ParseError::NoPciAddress { index })?)
            }
            "direct" => InterfaceKind::Direct { dev: self.dev },
            "bridge" => InterfaceKind::Bridge {
                bridge: self.bridge,
            },
            _ => InterfaceKind::Other(self.kind),
        };
        Ok(DomainInterface {
            kind,
            mac: self.mac,
        })
    }
}

/// Every `<interface>` directly under a `<devices>`, in document order.
pub fn interfaces_of(xml: &str) -> Result<Vec<DomainInterface>, ParseError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<Partial> = None;
    let mut out = Vec::new();
    loop {
        let event = reader.read_event().map_err(|source| ParseError::Xml {
            position: reader.error_position(),
            source,
        })?;
        let xml_err = |source: quick_xml::Error| ParseError::Xml {
            position: reader.buffer_position(),
            source,
        };
        match event {
            Event::Start(e) => {
                open(&e, &stack, &mut current, out.len()).map_err(|err| err.or_xml(xml_err))?;
                stack.push(e.name().as_ref().to_owned());
            }
            Event::Empty(e) => {
                open(&e, &stack, &mut current, out.len()).map_err(|err| err.or_xml(xml_err))?;
                if e.name().as_ref() == "interface"
                    && let Some(partial) = current.take()
                {
                    out.push(partial.finish(out.len())?);
                }
            }
            Event::End(_) => {
                let closed = stack.pop();
                if closed.as_deref() == Some("interface")
                    && stack.last().map(String::as_str) == Some("devices")
                    && let Some(partial) = current.take()
                {
                    out.push(partial.finish(out.len())?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(element) = stack.pop() {
        return Err(ParseError::Truncated { element });
    }
    Ok(out)
}

/// An error while reading one element: an attribute that would not decode (turned into
/// [`ParseError::Xml`] with the reader's position) or a value out of range.
enum OpenError {
    Xml(quick_xml::Error),
    Parse(ParseError),
}

impl OpenError {
    fn or_xml(self, xml: impl FnOnce(quick_xml::Error) -> ParseError) -> ParseError {
        match self {
            OpenError::Xml(e) => xml(e),
            OpenError::Parse(e) => e,
        }
    }
}

impl From<quick_xml::Error> for OpenError {
    fn from(e: quick_xml::Error) -> Self {
        OpenError::Xml(e)
    }
}

fn attr<'a>(e: &'a BytesStart<'_>, key: &str) -> Result<Option<Cow<'a, str>>, OpenError> {
    for a in e.attributes() {
        let a = a.map_err(quick_xml::Error::from)?;
        if a.key.as_ref() == key {
            return Ok(Some(a.normalized_value(XmlVersion::Implicit1_0)?));
        }
    }
    Ok(None)
}

fn open(
    e: &BytesStart<'_>,
    stack: &[String],
    current: &mut Option<Partial>,
    index: usize,
) -> Result<(), OpenError> {
    let name = e.name();
    let name = name.as_ref();
    let parent = stack.last().map(String::as_str);
    if name == "interface" && parent == Some("devices") {
        *current = Some(Partial {
            kind: attr(e, "type")?.unwrap_or_default().into_owned(),
            ..Partial::default()
        });
        return Ok(());
    }
    let Some(partial) = current.as_mut() else {
        return Ok(());
    };
    let bad = |field: &'static str, value: &str| {
        OpenError::Parse(ParseError::BadValue {
            index,
            field,
            value: value.to_owned(),
        })
    };
    match (parent, name) {
        (Some("interface"), "mac") => {
            if let Some(v) = attr(e, "address")? {
                partial.mac = Some(v.parse().map_err(|_| bad("mac address", &v))?);
            }
        }
        (Some("interface"), "source") => {
            partial.dev = attr(e, "dev")?.map(Cow::into_owned);
            partial.bridge = attr(e, "bridge")?.map(Cow::into_owned);
        }
        (Some("source"), "address")
            if stack.len() >= 2 && stack[stack.len() - 2] == "interface" =>
        {
            if attr(e, "type")?.as_deref() != Some("pci") {
                return Ok(());
            }
            partial.pci = Some(pci_address(e, bad)?);
        }
        _ => {}
    }
    Ok(())
}

/// A PCI `<address domain bus slot function/>` as libvirt reads it (a missing part is 0);
/// `bad` names a part out of range.
fn pci_address(
    e: &BytesStart<'_>,
    bad: impl Fn(&'static str, &str) -> OpenError,
) -> Result<PciAddr, OpenError> {
    let part = |key: &'static str| -> Result<u32, OpenError> {
        let v = attr(e, key)?.unwrap_or(Cow::Borrowed("0"));
        parse_c_uint(&v).ok_or_else(|| bad(key, &v))
    };
    let (domain, bus, slot, function) = (
        part("domain")?,
        part("bus")?,
        part("slot")?,
        part("function")?,
    );
    let bus = u8::try_from(bus).map_err(|_| bad("bus", &bus.to_string()))?;
    let slot = u8::try_from(slot)
        .ok()
        .filter(|s| *s <= 0x1f)
        .ok_or_else(|| bad("slot", &slot.to_string()))?;
    let function = u8::try_from(function)
        .ok()
        .filter(|f| *f <= 7)
        .ok_or_else(|| bad("function", &function.to_string()))?;
    Ok(PciAddr::new(domain, bus, slot, function))
}

/// An unsigned number as libvirt reads a PCI address part (`virStrToLong_uip` with base 0,
/// C's `strtoul` rules): `0x` hex, a leading `0` octal, else decimal.
fn parse_c_uint(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if s.len() > 1
        && let Some(oct) = s.strip_prefix('0')
    {
        u32::from_str_radix(oct, 8).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_c_uint;

    #[test]
    fn numbers_parse_as_libvirt_reads_them() {
        assert_eq!(parse_c_uint("0x10"), Some(16));
        assert_eq!(parse_c_uint("0X1f"), Some(31));
        assert_eq!(parse_c_uint("16"), Some(16));
        assert_eq!(parse_c_uint("010"), Some(8));
        assert_eq!(parse_c_uint("0"), Some(0));
        assert_eq!(parse_c_uint("0x"), None);
        assert_eq!(parse_c_uint("09"), None);
        assert_eq!(parse_c_uint("-1"), None);
        assert_eq!(parse_c_uint(""), None);
    }
}
