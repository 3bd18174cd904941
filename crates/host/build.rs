//! Compiles the PCI vendor and device names (the pci.ids database, from the `pci-ids` crate)
//! into one flat blob without pointers: `src/pciname.rs` reads it.
//!
//! Linked directly, `pci-ids`'s tables are some 50,000 pointers the dynamic loader relocates
//! at every start of every vfpool process (the CLI, the CNI plugin): more than the rest of
//! the program's start-up. A blob of numbers and names needs no relocation, and only the
//! pages a lookup touches are ever read.
//!
//! Layout, little-endian: `u32` vendor count, `u32` device count; vendor records
//! (`u32` id, `u32` name offset, `u32` name length) sorted by id; device records (`u32`
//! vendor << 16 | device, `u32` offset, `u32` length) sorted by key; then the names (UTF-8).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut names: Vec<u8> = Vec::new();
    let mut name = |s: &str| {
        let off = names.len() as u32;
        names.extend_from_slice(s.as_bytes());
        (off, s.len() as u32)
    };
    let mut vendors: Vec<(u32, u32, u32)> = Vec::new();
    let mut devices: Vec<(u32, u32, u32)> = Vec::new();
    for v in pci_ids::Vendors::iter() {
        let (off, len) = name(v.name());
        vendors.push((u32::from(v.id()), off, len));
        for d in v.devices() {
            let (off, len) = name(d.name());
            devices.push(((u32::from(v.id()) << 16) | u32::from(d.id()), off, len));
        }
    }
    vendors.sort_unstable();
    vendors.dedup_by_key(|r| r.0);
    devices.sort_unstable();
    devices.dedup_by_key(|r| r.0);
    let mut blob: Vec<u8> = Vec::new();
    blob.extend_from_slice(&(vendors.len() as u32).to_le_bytes());
    blob.extend_from_slice(&(devices.len() as u32).to_le_bytes());
    for (a, b, c) in vendors.iter().chain(devices.iter()) {
        for x in [a, b, c] {
            blob.extend_from_slice(&x.to_le_bytes());
        }
    }
    blob.extend_from_slice(&names);
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    std::fs::File::create(out.join("pci_names.bin"))?.write_all(&blob)?;
    println!("cargo::rerun-if-changed=build.rs");
    Ok(())
}
