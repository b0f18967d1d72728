//! Interest pushdown: an eater may name, in optional hello keys, the chefs and kitchens
//! it wants (`"nd_chefs": [..]`, `"nd_kitchens": [..]`; the original hub ignores them,
//! and an eater that sends none gets everything, as before).
//!
//! * Every hub (with or without `--nats`) then forwards to that eater only the dumplings
//!   of those chefs and kitchens ([`Interest::admits`]). Hub status dumplings pass only
//!   when `SystemStatusChef` is listed and no kitchen is (the rule of `nd-print -c/-k`).
//!   Under `--auth` the eater's principal is checked as well, so interest only narrows.
//! * A federated hub pulls from NATS only what its eaters want ([`Union`]): its one live
//!   consumer's filter is re-derived as eaters come and go.
//!   - On nats-server >= 2.10 (the version the server reports at connect) a consumer takes
//!     several filter subjects, so the filter is exact ([`union_subjects`]): one
//!     `<prefix>.K.C.*` per wanted kitchen K and chef C (`*` where an eater names none),
//!     with subjects that overlap merged (the server refuses overlapping filters), at most
//!     [`MAX_FILTER_SUBJECTS`] of them (more: the single-subject cover below).
//!   - On 2.9 (Debian 12's 2.9.10) a consumer has a single filter subject, so the filter
//!     is the narrowest single subject covering every eater ([`union_subject`]):
//!     `<prefix>.K.C.*` when all want the one kitchen K and/or the one chef C (`*` for the
//!     other), else `<prefix>.>`.
//!
//!   A filter is carried as one string, its subjects separated by a space (which no
//!   subject holds: [`super::subject`] escapes it). Eaters still filter exactly.
//! * A filter change hands over without a gap ([`consume_live`]): the old filter is read
//!   up to the stream's last sequence at the change, then the new one from the next.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tracing::info;

use super::reader::{read_stream, ReadEnd, ReadSpec, Start};
use super::subject::escape_token;
use crate::kitchen::{classify, Action};
use crate::state::{stopped, Frame, Origin};

/// Most names an eater may list per key, and the longest name.
pub const MAX_NAMES: usize = 64;
/// Longest chef or kitchen name in an interest list, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// What one eater asked for. `None` in a field means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interest {
    /// Wanted chefs (`nd_chefs`).
    pub chefs: Option<BTreeSet<String>>,
    /// Wanted kitchens (`nd_kitchens`), matched against `metadata.kitchen`.
    pub kitchens: Option<BTreeSet<String>>,
}

fn names(value: Option<&Value>, key: &str) -> Result<Option<BTreeSet<String>>, String> {
    let Some(value) = value else { return Ok(None) };
    let Value::Array(items) = value else {
        return Err(format!("{key} must be a list of names"));
    };
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() > MAX_NAMES {
        return Err(format!("{key} lists more than {MAX_NAMES} names"));
    }
    let mut set = BTreeSet::new();
    for item in items {
        match item {
            Value::String(s) if s.len() <= MAX_NAME_BYTES => {
                set.insert(s.clone());
            }
            _ => {
                return Err(format!(
                    "{key} must hold names of at most {MAX_NAME_BYTES} bytes"
                ))
            }
        }
    }
    Ok(Some(set))
}

use dumpling::eater_hello_keys as key;

impl Interest {
    /// Read `nd_chefs` / `nd_kitchens` from a hello. `Ok(None)` when neither is there
    /// (or both are empty); `Err` names the bad key (the hub tells the eater and serves it
    /// everything it may see, as without the keys).
    pub fn from_hello(hello: &RawValue) -> Result<Option<Interest>, String> {
        let value: Value = serde_json::from_str(hello.get()).map_err(|e| e.to_string())?;
        let chefs = names(value.get(key::CHEFS), key::CHEFS)?;
        let kitchens = names(value.get(key::KITCHENS), key::KITCHENS)?;
        if chefs.is_none() && kitchens.is_none() {
            return Ok(None);
        }
        Ok(Some(Interest { chefs, kitchens }))
    }

    /// Does the eater want a dumpling of `chef` from `kitchen`?
    pub fn wants(&self, chef: &str, kitchen: Option<&str>) -> bool {
        let chef_ok = self.chefs.as_ref().is_none_or(|c| c.contains(chef));
        let kitchen_ok = match &self.kitchens {
            None => true,
            Some(k) => kitchen.is_some_and(|kitchen| k.contains(kitchen)),
        };
        chef_ok && kitchen_ok
    }

    /// Does the eater want this frame? Frames tagged with their origin are checked
    /// directly; untagged ones (the plain path tags nothing) are parsed here, a cost only
    /// eaters with an interest pay.
    pub fn admits(&self, frame: &Frame) -> bool {
        match frame.origin.as_deref() {
            Some(Origin::Dumpling { chef, kitchen }) => self.wants(chef, kitchen.as_deref()),
            Some(Origin::Status(_)) => self.wants(dumpling::SYSTEM_STATUS_CHEF, None),
            None => match classify(&frame.message) {
                Action::Forward { chef, kitchen } => self.wants(&chef, kitchen.as_deref()),
                Action::Reserved { chef } => self.wants(&chef, None),
                _ => true,
            },
        }
    }

    /// The single subject covering this interest under `prefix`.
    pub fn subject(&self, prefix: &str) -> String {
        let one = |set: &Option<BTreeSet<String>>| match set {
            Some(s) if s.len() == 1 => s.iter().next().map(|n| escape_token(n)),
            _ => None,
        };
        cover(prefix, one(&self.kitchens), one(&self.chefs))
    }

    /// The consumer filter for this interest alone: exact with `multi` (server >= 2.10),
    /// else [`Interest::subject`].
    pub fn filter(&self, prefix: &str, multi: bool) -> String {
        if multi {
            union_subjects(prefix, [Some(self)])
        } else {
            self.subject(prefix)
        }
    }

    /// The (kitchen, chef) token pairs this interest wants, `*` for "any"; a product too
    /// large to list is widened on one side.
    fn pairs(&self) -> Vec<(String, String)> {
        let tokens = |set: &Option<BTreeSet<String>>| match set {
            Some(s) => s.iter().map(|n| escape_token(n)).collect::<Vec<_>>(),
            None => vec![ANY.to_owned()],
        };
        let (mut kitchens, mut chefs) = (tokens(&self.kitchens), tokens(&self.chefs));
        if kitchens.len() * chefs.len() > MAX_FILTER_SUBJECTS {
            if chefs.len() <= MAX_FILTER_SUBJECTS {
                kitchens = vec![ANY.to_owned()];
            } else {
                chefs = vec![ANY.to_owned()];
                if kitchens.len() > MAX_FILTER_SUBJECTS {
                    kitchens = vec![ANY.to_owned()];
                }
            }
        }
        let mut out = Vec::with_capacity(kitchens.len() * chefs.len());
        for k in &kitchens {
            for c in &chefs {
                out.push((k.clone(), c.clone()));
            }
        }
        out
    }
}

/// Most filter subjects of one consumer; a union needing more uses [`union_subject`]'s
/// single subject (nats-server checks every stored subject against each filter, so a long
/// list costs the server more than it saves).
pub const MAX_FILTER_SUBJECTS: usize = 64;

/// The wildcard token (escaped names never are `*`).
const ANY: &str = "*";

/// Does a server of this version (`INFO`'s `version`, e.g. `2.15.1`) accept several
/// filter subjects per consumer? (2.10 and later.)
pub fn supports_multi_filter(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 10),
        _ => false,
    }
}

/// The subjects of a filter string (one, or several separated by spaces).
pub fn filter_subjects(filter: &str) -> Vec<String> {
    filter
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn token_overlaps(a: &str, b: &str) -> bool {
    a == b || a == ANY || b == ANY
}

fn token_covers(a: &str, b: &str) -> bool {
    a == ANY || a == b
}

/// The exact multi-subject filter for every interest (`None` = wants everything), as a
/// space-separated string: no two subjects overlap (a pair that does is merged into the
/// one covering both, or the wider kept), and more than [`MAX_FILTER_SUBJECTS`] fall back
/// to [`union_subject`].
pub fn union_subjects<'a>(
    prefix: &str,
    interests: impl IntoIterator<Item = Option<&'a Interest>> + Clone,
) -> String {
    let mut set: BTreeSet<(String, String)> = BTreeSet::new();
    for interest in interests.clone() {
        let Some(interest) = interest else {
            return format!("{prefix}.>");
        };
        set.extend(interest.pairs());
        // Bounds the merging below (cubic in the worst case) for any set of hellos.
        if set.len() > MAX_FILTER_SUBJECTS * 2 {
            return union_subject(prefix, interests);
        }
    }
    if set.is_empty() {
        return format!("{prefix}.>");
    }
    // Merge until no two overlap; each step removes at least one pair, so this ends.
    'merge: loop {
        if set.contains(&(ANY.to_owned(), ANY.to_owned())) {
            return format!("{prefix}.>");
        }
        let pairs: Vec<(String, String)> = set.iter().cloned().collect();
        for (i, a) in pairs.iter().enumerate() {
            for b in &pairs[i + 1..] {
                if !(token_overlaps(&a.0, &b.0) && token_overlaps(&a.1, &b.1)) {
                    continue;
                }
                set.remove(a);
                set.remove(b);
                let join = |x: &str, y: &str| {
                    if x == y {
                        x.to_owned()
                    } else {
                        ANY.to_owned()
                    }
                };
                let merged = if token_covers(&a.0, &b.0) && token_covers(&a.1, &b.1) {
                    a.clone()
                } else if token_covers(&b.0, &a.0) && token_covers(&b.1, &a.1) {
                    b.clone()
                } else {
                    (join(&a.0, &b.0), join(&a.1, &b.1))
                };
                set.insert(merged);
                continue 'merge;
            }
        }
        break;
    }
    if set.contains(&(ANY.to_owned(), ANY.to_owned())) {
        return format!("{prefix}.>");
    }
    if set.len() > MAX_FILTER_SUBJECTS {
        return union_subject(prefix, interests);
    }
    set.iter()
        .map(|(k, c)| format!("{prefix}.{k}.{c}.*"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cover(prefix: &str, kitchen: Option<String>, chef: Option<String>) -> String {
    match (kitchen, chef) {
        (None, None) => format!("{prefix}.>"),
        (k, c) => format!(
            "{prefix}.{}.{}.*",
            k.as_deref().unwrap_or("*"),
            c.as_deref().unwrap_or("*")
        ),
    }
}

/// The narrowest single subject covering every interest (`None` = wants everything).
pub fn union_subject<'a>(
    prefix: &str,
    interests: impl IntoIterator<Item = Option<&'a Interest>>,
) -> String {
    let mut kitchen: Option<Option<String>> = None;
    let mut chef: Option<Option<String>> = None;
    let mut any = false;
    for interest in interests {
        any = true;
        let Some(interest) = interest else {
            return format!("{prefix}.>");
        };
        let single = |set: &Option<BTreeSet<String>>| match set {
            Some(s) if s.len() == 1 => s.iter().next().cloned(),
            _ => None,
        };
        let (k, c) = (single(&interest.kitchens), single(&interest.chefs));
        // Keep a token only while every interest names the same single one.
        kitchen = Some(match kitchen {
            None => k,
            Some(prev) if prev == k => prev,
            Some(_) => None,
        });
        chef = Some(match chef {
            None => c,
            Some(prev) if prev == c => prev,
            Some(_) => None,
        });
    }
    if !any {
        return format!("{prefix}.>");
    }
    cover(
        prefix,
        kitchen.flatten().map(|k| escape_token(&k)),
        chef.flatten().map(|c| escape_token(&c)),
    )
}

/// The interests of a hub's live eaters, and the live consumer's filter derived from them.
#[derive(Debug)]
pub struct Union {
    prefix: String,
    /// The server takes several filter subjects per consumer (>= 2.10).
    multi: bool,
    members: Mutex<(u64, BTreeMap<u64, Option<Interest>>)>,
    filter: watch::Sender<String>,
}

/// One eater's place in the [`Union`]; leaving re-derives the filter.
#[derive(Debug)]
pub struct Member {
    union: Arc<Union>,
    id: u64,
}

impl Union {
    /// A union with no eater: the filter is the whole stream (`<prefix>.>`). `multi`:
    /// the server accepts several filter subjects per consumer ([`supports_multi_filter`]).
    pub fn new(prefix: &str, multi: bool) -> Arc<Union> {
        let (filter, _) = watch::channel(format!("{prefix}.>"));
        Arc::new(Union {
            prefix: prefix.to_owned(),
            multi,
            members: Mutex::new((0, BTreeMap::new())),
            filter,
        })
    }

    /// Watch the filter subject.
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.filter.subscribe()
    }

    /// The current filter subject.
    pub fn current(&self) -> String {
        self.filter.borrow().clone()
    }

    /// Whether filters may list several subjects (server >= 2.10).
    pub fn multi(&self) -> bool {
        self.multi
    }

    /// Add an eater reading the live ring.
    pub fn join(self: &Arc<Self>, interest: Option<Interest>) -> Member {
        let id = {
            let mut members = self.lock();
            let id = members.0;
            members.0 += 1;
            members.1.insert(id, interest);
            id
        };
        self.recompute();
        Member {
            union: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Option<Interest>>)> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recompute(&self) {
        let subject = {
            let members = self.lock();
            // With no eater the filter stays as it is: narrowing to nothing would make
            // the next eater wait for a consumer switch for no gain on an idle hub.
            if members.1.is_empty() {
                return;
            }
            let interests = members.1.values().map(|i| i.as_ref());
            if self.multi {
                union_subjects(&self.prefix, interests)
            } else {
                union_subject(&self.prefix, interests)
            }
        };
        self.filter.send_if_modified(|current| {
            if *current == subject {
                false
            } else {
                *current = subject;
                true
            }
        });
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.union.lock().1.remove(&self.id);
        self.union.recompute();
    }
}

/// The hub's live consumer: read the stream from `start_sequence` with the filter the
/// eaters' interests call for, switching filters without a gap or a repeat for the eaters
/// that stay. Ends on shutdown or when the sink stops.
pub async fn consume_live<F, Fut>(
    js: jetstream::Context,
    stream: String,
    start_sequence: u64,
    mut filter_rx: watch::Receiver<String>,
    mut shutdown: watch::Receiver<bool>,
    mut sink: F,
) where
    F: FnMut(Message, u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut filter = filter_rx.borrow_and_update().clone();
    let mut start = Start::Sequence(start_sequence.max(1));
    loop {
        let spec = ReadSpec {
            stream: &stream,
            filter: &filter,
            until: None,
            on_recreated: None,
            created: None,
        };
        match read_stream(
            &js,
            spec,
            &mut start,
            Some(&mut filter_rx),
            &mut shutdown,
            &mut sink,
        )
        .await
        {
            ReadEnd::FilterChanged => {}
            _ => return,
        }
        let new = filter_rx.borrow_and_update().clone();
        if new == filter {
            continue;
        }
        // Everything stored so far was meant for the old filter's eaters: finish it
        // up to the stream's last sequence, then read the new filter after that.
        let last = loop {
            if let Some(last) = super::stream_last_sequence(&js, &stream).await {
                break last;
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                _ = stopped(&mut shutdown) => return,
            }
        };
        let spec = ReadSpec {
            stream: &stream,
            filter: &filter,
            until: Some(last),
            on_recreated: None,
            created: None,
        };
        match read_stream(&js, spec, &mut start, None, &mut shutdown, &mut sink).await {
            ReadEnd::ReachedUntil => {}
            _ => return,
        }
        if let Start::Sequence(next) = start {
            start = Start::Sequence(next.max(last + 1));
        }
        info!(from = %filter, to = %new, ?start, "fleet: live consumer filter changed");
        filter = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(chefs: &[&str], kitchens: &[&str]) -> Interest {
        let set = |v: &[&str]| {
            (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>())
        };
        Interest {
            chefs: set(chefs),
            kitchens: set(kitchens),
        }
    }

    #[test]
    fn hello_keys_parse_and_bad_ones_are_named() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        assert_eq!(
            Interest::from_hello(&raw(r#"{"eater_name":"e"}"#)),
            Ok(None)
        );
        assert_eq!(
            Interest::from_hello(&raw(r#"{"eater_name":"e","nd_chefs":["A"]}"#)),
            Ok(Some(interest(&["A"], &[])))
        );
        assert!(
            Interest::from_hello(&raw(r#"{"eater_name":"e","nd_kitchens":"k"}"#))
                .unwrap_err()
                .contains("nd_kitchens")
        );
        let many: Vec<String> = (0..=MAX_NAMES).map(|i| i.to_string()).collect();
        let text = serde_json::json!({"eater_name": "e", "nd_chefs": many}).to_string();
        assert!(Interest::from_hello(&raw(&text)).is_err());
    }

    #[test]
    fn wants_narrows_by_chef_and_kitchen() {
        let i = interest(&["A"], &["k"]);
        assert!(i.wants("A", Some("k")));
        assert!(!i.wants("A", None));
        assert!(!i.wants("B", Some("k")));
        assert!(interest(&["A"], &[]).wants("A", None));
    }

    #[test]
    fn frames_are_checked_tagged_or_not() {
        let i = interest(&["A"], &[]);
        let text = |chef: &str| {
            Message::text(format!(
                r#"{{"metadata":{{"chef":"{chef}","kitchen":"k","creation_time":1.0,"driver":"packet"}},"payload":1}}"#
            ))
        };
        let frame = |message, origin| Frame {
            message,
            end_offset: 0,
            origin,
            seq: 0,
            wire: None,
        };
        assert!(i.admits(&frame(text("A"), None)));
        assert!(!i.admits(&frame(text("B"), None)));
        let status = Some(Arc::new(Origin::Status(None)));
        assert!(!i.admits(&frame(text("B"), status.clone())));
        assert!(interest(&["A", "SystemStatusChef"], &[]).admits(&frame(text("x"), status)));
    }

    #[test]
    fn union_is_the_narrowest_single_subject() {
        let p = "nd.d";
        let a = interest(&["A"], &[]);
        let b = interest(&["B"], &[]);
        let ak = interest(&["A"], &["k 1"]);
        assert_eq!(union_subject(p, [Some(&a)]), "nd.d.*.A.*");
        assert_eq!(union_subject(p, [Some(&a), Some(&ak)]), "nd.d.*.A.*");
        assert_eq!(union_subject(p, [Some(&ak)]), "nd.d.k~201.A.*");
        assert_eq!(union_subject(p, [Some(&a), Some(&b)]), "nd.d.>");
        assert_eq!(union_subject(p, [Some(&a), None]), "nd.d.>");
        assert_eq!(
            union_subject(p, [Some(&interest(&["A", "B"], &[]))]),
            "nd.d.>"
        );
        assert_eq!(ak.subject(p), "nd.d.k~201.A.*");
    }

    #[test]
    fn multi_filters_are_exact_and_never_overlap() {
        let p = "nd.d";
        let a = interest(&["A"], &[]);
        let b = interest(&["B"], &[]);
        let ak = interest(&["A"], &["k 1"]);
        let bk2 = interest(&["B"], &["k2"]);
        let k3 = interest(&[], &["k3"]);
        assert_eq!(union_subjects(p, [Some(&a)]), "nd.d.*.A.*");
        assert_eq!(
            union_subjects(p, [Some(&a), Some(&b)]),
            "nd.d.*.A.* nd.d.*.B.*"
        );
        // k 1/A is inside */A: the wider one stays.
        assert_eq!(union_subjects(p, [Some(&a), Some(&ak)]), "nd.d.*.A.*");
        assert_eq!(
            union_subjects(p, [Some(&ak), Some(&bk2)]),
            "nd.d.k2.B.* nd.d.k~201.A.*"
        );
        // k3/* and */A overlap (k3/A) without one covering the other: merged into */*.
        assert_eq!(union_subjects(p, [Some(&a), Some(&k3)]), "nd.d.>");
        assert_eq!(union_subjects(p, [Some(&a), None]), "nd.d.>");
        assert_eq!(
            interest(&["A", "B"], &["k"]).filter(p, true),
            "nd.d.k.A.* nd.d.k.B.*"
        );
        assert_eq!(interest(&["A", "B"], &["k"]).filter(p, false), "nd.d.k.*.*");
        // Too many to list: the single-subject cover.
        let many: Vec<String> = (0..MAX_FILTER_SUBJECTS + 1)
            .map(|i| format!("C{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let wide = interest(&many, &[]);
        assert_eq!(union_subjects(p, [Some(&wide)]), "nd.d.>");
        assert_eq!(
            filter_subjects("nd.d.*.A.* nd.d.*.B.*"),
            ["nd.d.*.A.*", "nd.d.*.B.*"]
        );
    }

    #[test]
    fn servers_from_2_10_take_several_filter_subjects() {
        assert!(supports_multi_filter("2.15.1"));
        assert!(supports_multi_filter("2.10.0"));
        assert!(supports_multi_filter("v3.0.0-beta"));
        assert!(!supports_multi_filter("2.9.10"));
        assert!(!supports_multi_filter("garbage"));
    }

    #[test]
    fn members_re_derive_the_filter_as_they_come_and_go() {
        let multi = Union::new("nd.d", true);
        let _a = multi.join(Some(interest(&["A"], &[])));
        let _b = multi.join(Some(interest(&["B"], &[])));
        assert_eq!(multi.current(), "nd.d.*.A.* nd.d.*.B.*");
        let union = Union::new("nd.d", false);
        let all = union.join(None);
        let one = union.join(Some(interest(&["A"], &[])));
        assert_eq!(union.current(), "nd.d.>");
        drop(all);
        assert_eq!(union.current(), "nd.d.*.A.*");
        drop(one);
        assert_eq!(union.current(), "nd.d.*.A.*", "kept while no eater is left");
    }
}
