//! The shared libraries a dynamically linked ELF binary needs at run time, found on the build
//! host the way the dynamic loader would find them: its interpreter (`PT_INTERP`), then every
//! `DT_NEEDED` name, recursively, in the binary's run paths and the architecture's system
//! directories; and the binary as it goes into an image, without its debug sections.

use super::{Arch, ImageError};
use goblin::elf::Elf;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// A file the image needs: where it goes in the image, and the host file it is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub image_path: String,
    pub host: PathBuf,
}

/// The interpreter and libraries of `binary`, in a stable order (by image path). A statically
/// linked binary needs none.
pub fn closure(binary: &Path, arch: Arch) -> Result<Vec<Needed>, ImageError> {
    closure_in(binary, arch, arch.lib_dirs())
}

pub(crate) fn closure_in(binary: &Path, arch: Arch, system: &[&str]) -> Result<Vec<Needed>, ImageError> {
    let bytes = std::fs::read(binary).map_err(|e| ImageError::io(binary, e))?;
    let elf = parse(binary, &bytes)?;
    if elf.header.e_machine != arch.elf_machine() {
        return Err(ImageError::Binary(format!(
            "{} is built for ELF machine {}, not {} (build it for that target, or set `architecture`)",
            binary.display(),
            elf.header.e_machine,
            arch.name()
        )));
    }
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    // The loader is already loaded when the libraries ask for it by soname: one copy, at the
    // path the binary names.
    let mut interp_name = None;
    if let Some(interp) = elf.interpreter {
        let host = PathBuf::from(interp);
        if !host.exists() {
            return Err(ImageError::Binary(format!("{}: its loader {interp} is not on this host", binary.display())));
        }
        interp_name = Path::new(interp).file_name().map(|n| n.to_string_lossy().into_owned());
        out.insert(interp.to_owned(), host);
    }
    let mut seen: BTreeSet<String> = interp_name.into_iter().collect();
    let mut queue: VecDeque<(String, Vec<String>, PathBuf)> =
        elf.libraries.iter().map(|l| ((*l).to_owned(), run_paths(&elf), binary.to_owned())).collect();
    while let Some((name, own_paths, wanted_by)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let dirs = own_paths.iter().map(String::as_str).chain(system.iter().copied());
        let Some(dir) = dirs.clone().find(|d| Path::new(d).join(&name).is_file()) else {
            return Err(ImageError::Binary(format!(
                "{} needs {name}, which is in none of {} on this host (install the library, or link it statically)",
                wanted_by.display(),
                dirs.collect::<Vec<_>>().join(", ")
            )));
        };
        let host = Path::new(dir).join(&name);
        let lib = std::fs::read(&host).map_err(|e| ImageError::io(&host, e))?;
        let parsed = parse(&host, &lib)?;
        for l in &parsed.libraries {
            queue.push_back(((*l).to_owned(), run_paths(&parsed), host.clone()));
        }
        out.insert(format!("{}/{name}", dir.trim_end_matches('/')), host);
    }
    Ok(out.into_iter().map(|(image_path, host)| Needed { image_path, host }).collect())
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Elf<'a>, ImageError> {
    Elf::parse(bytes).map_err(|e| ImageError::Binary(format!("{} is not an ELF file: {e}", path.display())))
}

/// `DT_RUNPATH` and `DT_RPATH` entries that are plain directories (`$ORIGIN` ones are relative
/// to where the binary sits, which the image does not keep).
fn run_paths(elf: &Elf<'_>) -> Vec<String> {
    elf.runpaths
        .iter()
        .chain(&elf.rpaths)
        .flat_map(|p| p.split(':'))
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// `data` (an ELF executable) without its `.debug_*` sections: the line tables a release build
/// keeps for the build host's debugger and backtraces, most of a Rust binary's size (a release
/// `quake`: 155 MB, 17 MB of code). What runs is unchanged - no loaded segment is touched - and
/// the symbol table stays, so a backtrace still names functions. The same input gives the same
/// bytes. A binary without debug sections is returned as it was.
pub fn strip_debug(path: &Path, data: Vec<u8>) -> Result<Vec<u8>, ImageError> {
    let bad =
        |e: object::build::Error| ImageError::Binary(format!("{}: cannot rewrite the ELF file: {e}", path.display()));
    let mut elf = object::build::elf::Builder::read(&*data).map_err(bad)?;
    let mut any = false;
    for s in elf.sections.iter_mut() {
        if s.name.starts_with(b".debug_") {
            s.delete = true;
            any = true;
        }
    }
    if !any {
        return Ok(data);
    }
    let mut out = Vec::new();
    elf.write(&mut out).map_err(bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_binaries_lose_their_debug_sections_and_still_run() {
        // This test binary carries line tables (the test profile's `line-tables-only`).
        let me = std::env::current_exe().unwrap();
        let data = std::fs::read(&me).unwrap();
        let debug = |b: &[u8]| {
            let e = Elf::parse(b).unwrap();
            e.section_headers
                .iter()
                .filter(|h| e.shdr_strtab.get_at(h.sh_name).is_some_and(|n| n.starts_with(".debug_")))
                .count()
        };
        assert!(debug(&data) > 0, "the test binary has debug sections to strip");
        let stripped = strip_debug(&me, data.clone()).unwrap();
        assert_eq!(debug(&stripped), 0);
        assert!(stripped.len() < data.len(), "{} -> {}", data.len(), stripped.len());
        assert_eq!(strip_debug(&me, data.clone()).unwrap(), stripped, "the same bytes every time");
        assert_eq!(strip_debug(&me, stripped.clone()).unwrap(), stripped, "nothing left to strip");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("stripped");
        std::fs::write(&copy, &stripped).unwrap();
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // It runs: the test harness lists this very test.
        let out = std::process::Command::new(&copy).args(["--list", "stripped_binaries"]).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("stripped_binaries"), "{out:?}");
        assert!(strip_debug(&me, b"not an ELF file".to_vec()).is_err());
    }

    #[test]
    fn the_test_binary_needs_libc_and_its_loader_once() {
        let me = std::env::current_exe().unwrap();
        let libs = closure(&me, Arch::X86_64).unwrap();
        let names: Vec<&str> = libs.iter().map(|n| n.image_path.rsplit('/').next().unwrap()).collect();
        assert!(names.contains(&"libc.so.6"), "{names:?}");
        assert_eq!(names.iter().filter(|n| n.starts_with("ld-linux")).count(), 1, "{names:?}");
        assert!(libs.iter().any(|n| n.image_path == "/lib64/ld-linux-x86-64.so.2"), "{libs:?}");
        assert!(libs.iter().all(|n| n.host.is_file()));
    }

    #[test]
    fn wrong_architecture_and_missing_libraries_are_explained() {
        let me = std::env::current_exe().unwrap();
        let e = closure(&me, Arch::Arm64).unwrap_err().to_string();
        assert!(e.contains("not arm64"), "{e}");
        let e = closure_in(&me, Arch::X86_64, &["/nonexistent"]).unwrap_err().to_string();
        assert!(e.contains("which is in none of /nonexistent"), "{e}");
        let e = closure(Path::new("/etc/passwd"), Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("not an ELF file"), "{e}");
    }
}
