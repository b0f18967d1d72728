//! Which chefs run: finding them (the built-in sample chefs, [`builtin`], and `*.wasm` files
//! in a chef directory) and hot reload of that directory ([`reload`]).
//!
//! A chef that fails to load is reported (with the file and the typed reason) and skipped;
//! it never stops the kitchen (the original's rule for chef modules that fail to import).

pub mod builtin;
mod link_targets;
pub mod reload;

use std::path::{Path, PathBuf};

use crate::chef_host::{chef_file, ChefHost, ChefSource, LoadError, LoadedChef};
use crate::chefs::builtin::{BUILTIN_CHEFS, BUILTIN_MODULE};

/// One chef found: where it came from and whether it loaded.
pub struct FoundChef {
    /// Where it came from.
    pub source: ChefSource,
    /// The loaded chef, or why it did not load.
    pub result: Result<LoadedChef, LoadError>,
    /// For a file: what hot reload compares it with later ([`reload::FileVersion`]): the
    /// bytes (and signature) read at start, or the refusal of the read. A file changed
    /// after this read, while the other chefs still loaded, is reloaded once the watch
    /// starts.
    pub version: Option<reload::FileVersion>,
}

/// The chef directory could not be listed.
#[derive(Debug, thiserror::Error)]
// The OS error is the source (printed after this by `{:#}` chains), not repeated here.
#[error("cannot list the chef directory {}", dumpling::text::escape_path(dir))]
pub struct ChefDirError {
    /// The directory.
    pub dir: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Load the built-in chefs (if `builtin`) and every `*.wasm` in `dir` (sorted by file
/// name, not recursive).
pub fn discover(
    host: &ChefHost,
    builtin: bool,
    dir: Option<&Path>,
) -> Result<Vec<FoundChef>, ChefDirError> {
    let mut found = Vec::new();
    if builtin {
        for b in BUILTIN_CHEFS {
            let source = ChefSource::Builtin(b.file);
            let result = host.load(source.clone(), b.bytes);
            found.push(FoundChef {
                source,
                result,
                version: None,
            });
        }
    }
    if let Some(dir) = dir {
        // Every `*.wasm` entry is tried, whatever it is: a FIFO, a directory or a device
        // named `x.wasm` is refused by `read_chef_file` (without blocking) and so named in
        // the log with its reason, instead of being skipped without a word.
        let files = chef_file::list_chef_dir(dir).map_err(|source| ChefDirError {
            dir: dir.to_owned(),
            source,
        })?;
        for path in files {
            let read = host.read_file(Some(dir), &path);
            let version = reload::FileVersion::of_read(&path, &read);
            let result = read
                .and_then(|bytes| host.load(ChefSource::File(path.clone()), &bytes))
                .and_then(|chef| refuse_duplicate(&found, chef));
            found.push(FoundChef {
                source: ChefSource::File(path),
                result,
                version,
            });
        }
    }
    Ok(found)
}

/// `chef`, or a [`LoadError::DuplicateName`] when a chef already in `found` holds its name
/// ([`name_verdict`]). Why here and not only in [`loaded`]: the duplicate is dropped (its
/// instance and its share of the kitchen's memory budget returned) before the next file
/// loads, so a folder of many copies of one chef cannot use up the budget and crowd out a
/// distinct chef that sorts after them.
fn refuse_duplicate(found: &[FoundChef], chef: LoadedChef) -> Result<LoadedChef, LoadError> {
    let running: Vec<&LoadedChef> = found
        .iter()
        .filter_map(|f| f.result.as_ref().ok())
        .collect();
    match name_verdict(
        running.iter().map(|c| (c.name(), c.source())),
        chef.name(),
        chef.source(),
    ) {
        NameVerdict::Duplicate(i) => Err(LoadError::DuplicateName {
            name: chef.name().to_owned(),
            kept: running
                .get(i)
                .map(|c| c.source().to_string())
                .unwrap_or_default(),
        }),
        NameVerdict::New | NameVerdict::OverridesBuiltin(_) => Ok(chef),
    }
}

/// The name the hello's `chefs` list uses, in the original's `<module>.<ClassName>` form:
/// `netdumplings.dumplingchefs.ARPChef` for built-ins, `<path>.<Name>` for files.
pub fn qualified_name(chef: &LoadedChef) -> String {
    match chef.source() {
        ChefSource::Builtin(_) => format!("{BUILTIN_MODULE}.{}", chef.name()),
        ChefSource::File(_) => format!("{}.{}", chef.source(), chef.name()),
    }
}

/// What a chef's name means next to the chefs already running: the kitchen's one rule for
/// names, at start ([`loaded`]) and on hot reload ([`reload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameVerdict {
    /// No running chef has the name: add it.
    New,
    /// A chef file takes the name of the built-in chef at this index: it replaces it (so a
    /// user can override a sample chef).
    OverridesBuiltin(usize),
    /// Another chef already holds the name (another file, or a built-in when the newcomer
    /// is built in too): the newcomer is refused and the running one stays.
    Duplicate(usize),
}

/// The [`NameVerdict`] for a chef `name` from `source`, among `running` (each chef's name
/// and source, in order). Callers leave out the chef a new version replaces.
pub fn name_verdict<'a>(
    running: impl IntoIterator<Item = (&'a str, &'a ChefSource)>,
    name: &str,
    source: &ChefSource,
) -> NameVerdict {
    let Some((i, (_, held_by))) = running
        .into_iter()
        .enumerate()
        .find(|(_, (n, _))| *n == name)
    else {
        return NameVerdict::New;
    };
    match (held_by, source) {
        (ChefSource::Builtin(_), ChefSource::File(_)) => NameVerdict::OverridesBuiltin(i),
        _ => NameVerdict::Duplicate(i),
    }
}

/// The chefs that loaded, without duplicates, by [`name_verdict`]: a chef from the
/// directory replaces a built-in of the same name; within the directory the first file (by
/// name) wins. Load failures are logged here.
pub fn loaded(found: Vec<FoundChef>) -> Vec<LoadedChef> {
    let mut out: Vec<LoadedChef> = Vec::new();
    for f in found {
        match f.result {
            Ok(chef) => {
                let running = out.iter().map(|c| (c.name(), c.source()));
                match name_verdict(running, chef.name(), chef.source()) {
                    NameVerdict::New => out.push(chef),
                    NameVerdict::OverridesBuiltin(i) => {
                        tracing::warn!(chef = chef.name(), file = %chef.source(),
                            "chef file overrides the built-in chef of the same name");
                        out[i] = chef;
                    }
                    NameVerdict::Duplicate(i) => {
                        tracing::warn!(chef = chef.name(), file = %chef.source(), kept = %out[i].source(),
                            "duplicate chef name; ignoring this one");
                    }
                }
            }
            Err(e) => tracing::error!(source = %f.source,
                error = %dumpling::text::Escaped::composed(&e.to_string(), 1024), "chef not loaded"),
        }
    }
    out
}

/// The chefs of `found` that did not load, as (source, error) pairs: the source as
/// `ChefSource` displays it (the file's path, or `built-in:<file>`), the typed reason as
/// text. The kitchen counts them per file (`StatusInputs::record_load_failure`, shown in
/// the exit summary and `KitchenStatusChef`).
pub fn load_failures(found: &[FoundChef]) -> Vec<(String, String)> {
    found
        .iter()
        .filter_map(|f| match &f.result {
            Ok(_) => None,
            Err(e) => Some((f.source.to_string(), e.to_string())),
        })
        .collect()
}

/// Keep the chefs named in `requested` (all if empty). Returns the kept chefs and the
/// requested names that matched nothing.
pub fn select(chefs: Vec<LoadedChef>, requested: &[String]) -> (Vec<LoadedChef>, Vec<String>) {
    if requested.is_empty() {
        return (chefs, Vec::new());
    }
    let missing = requested
        .iter()
        .filter(|r| !chefs.iter().any(|c| c.name() == r.as_str()))
        .cloned()
        .collect();
    let kept = chefs
        .into_iter()
        .filter(|c| requested.iter().any(|r| r == c.name()))
        .collect();
    (kept, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_rule_files_override_built_ins_and_the_first_holder_keeps_a_name() {
        let builtin = ChefSource::Builtin("arp_chef.wasm");
        let file_a = ChefSource::File(PathBuf::from("chefs/a.wasm"));
        let file_b = ChefSource::File(PathBuf::from("chefs/b.wasm"));
        let running = [("ARPChef", &builtin), ("MyChef", &file_a)];
        assert_eq!(name_verdict(running, "Other", &file_b), NameVerdict::New);
        assert_eq!(
            name_verdict(running, "ARPChef", &file_b),
            NameVerdict::OverridesBuiltin(0)
        );
        assert_eq!(
            name_verdict(running, "MyChef", &file_b),
            NameVerdict::Duplicate(1)
        );
        assert_eq!(
            name_verdict(running, "ARPChef", &builtin),
            NameVerdict::Duplicate(0)
        );
    }
}
