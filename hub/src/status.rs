//! `SystemStatusChef` dumplings (the original's payload keys) and `HubNoticeChef` notices.
//!
//! The status lists are capped at [`crate::Config::status_list_max`] entries while the
//! counts stay exact, so a status costs O(cap) to build and status traffic grows linearly
//! with the number of eaters (the original's grew with its square).
//!
//! The listed hellos share [`HELLO_BUDGET_BYTES`] ([`fit_hellos`]): a peer chooses its
//! hello (up to the 1 MiB message limit), and 25 one-megabyte kitchen hellos made every
//! status 25 MB, sent to every eater every period, and too large for the original's eaters
//! and the Python library (1 MiB frames), which then reconnected in a loop. A status stays
//! well under 1 MiB with the default list cap.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dumpling::{Driver, EaterStatus, HubPeerInfo, KitchenStatus, SystemStatus};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::Principal;
use crate::state::{Origin, Peer, Shared};

/// A kitchen's or eater's entry: its hello as the hub holds it (raw JSON, borrowed from
/// the peer unless a restricted view rewrote it).
type Hello<'a> = Cow<'a, RawValue>;
type KitchenEntry<'a> = KitchenStatus<Hello<'a>>;
type EaterEntry<'a> = EaterStatus<Hello<'a>>;

/// Bytes the listed hellos of one status may take together, less [`ENTRY_BYTES`] per
/// listed entry (see [`fit_hellos`]).
pub const HELLO_BUDGET_BYTES: usize = 768 << 10;

/// Longest hello a peer keeps whole in the hub, in bytes; a longer one is kept only in its
/// cut form ([`cut_hello`]). Why: a hello may be up to the 1 MiB message cap, and every
/// connection kept its whole hello for its life (100 kitchens with 1 MiB hellos held 100
/// MiB; at the default connection caps several GiB), though a status lists hellos within
/// [`HELLO_BUDGET_BYTES`] for all of them together (an even share of it is ~30 KiB at the
/// default list cap of 25), and real hellos (name, interface, filter, chefs and their
/// identities) are a few KiB.
pub const MAX_KEPT_HELLO_BYTES: usize = 32 << 10;

/// What a listed entry costs besides its hello (host, port, counters), reserved out of
/// [`HELLO_BUDGET_BYTES`] for each.
const ENTRY_BYTES: usize = 256;

/// Longest name (in characters) a cut hello keeps.
const CUT_NAME_CHARS: usize = 256;

/// The hello as a status lists it when it does not fit: `{"<name key>": <name, cut to
/// 256 characters>, "nd_hello_cut": true, "nd_hello_bytes": <its length>}`. Built once, at
/// registration, so a status never parses a large hello.
pub fn cut_hello(side: crate::Side, hello: &crate::hello::Hello) -> Box<RawValue> {
    let key = match side {
        crate::Side::Kitchen => "kitchen_name",
        crate::Side::Eater => "eater_name",
    };
    let name: String = hello.name.chars().take(CUT_NAME_CHARS).collect();
    let cut = serde_json::json!({
        key: name,
        "nd_hello_cut": true,
        "nd_hello_bytes": hello.raw.get().len(),
    });
    serde_json::value::to_raw_value(&cut)
        .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).expect("valid JSON"))
}

/// The largest hello that is listed whole when hellos of `sizes` share `budget` bytes:
/// max-min fair (water-filling): every hello up to an equal share is listed whole, and
/// what the small ones leave is shared among the large ones. `usize::MAX` when all fit.
pub fn fit_hellos(sizes: &[usize], budget: usize) -> usize {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let mut left = budget;
    for (i, &size) in sorted.iter().enumerate() {
        let share = left / (sorted.len() - i);
        if size > share {
            return share;
        }
        left -= size;
    }
    usize::MAX
}

/// The hello a status lists for `peer`, whole when it is at most `largest` bytes.
fn listed_hello(peer: &Peer, largest: usize) -> Hello<'_> {
    if peer.hello.get().len() <= largest {
        Cow::Borrowed(&peer.hello)
    } else {
        Cow::Borrowed(&peer.hello_cut)
    }
}

/// Seconds since the Unix epoch, as the wire's float.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn kitchen_entry(peer: &Peer, largest: usize) -> KitchenEntry<'_> {
    KitchenEntry {
        info_from_kitchen: listed_hello(peer, largest),
        info_from_hub: HubPeerInfo {
            host: peer.addr.ip().to_string(),
            port: peer.addr.port(),
            dumplings_in: Some(peer.good.load(Ordering::Relaxed)),
            dumplings_invalid: Some(peer.bad.load(Ordering::Relaxed)),
            dumplings_refused: Some(peer.refused.load(Ordering::Relaxed)).filter(|n| *n > 0),
            ..HubPeerInfo::default()
        },
    }
}

fn eater_entry(peer: &Peer, largest: usize) -> EaterEntry<'_> {
    EaterEntry {
        info_from_eater: listed_hello(peer, largest),
        info_from_hub: HubPeerInfo {
            host: peer.addr.ip().to_string(),
            port: peer.addr.port(),
            dumplings_delivered: Some(peer.good.load(Ordering::Relaxed)),
            dumplings_dropped: Some(peer.bad.load(Ordering::Relaxed)),
            ..HubPeerInfo::default()
        },
    }
}

/// Build one status dumpling. `must_list` is an eater id that must appear in the list
/// even past the cap (a new eater is listed in the status it is welcomed with, as the
/// original lists the receiving eater).
pub fn build_status(shared: &Shared, must_list: Option<u64>) -> String {
    build_status_for(shared, must_list, None)
}

/// The kitchen name a kitchen's hello declares (for restricted status views).
pub(crate) fn hello_kitchen_name(peer: &Peer) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(peer.hello.get()).ok()?;
    value.get("kitchen_name")?.as_str().map(str::to_owned)
}

/// A kitchen's entry as a principal restricted to `chefs` sees it: the hello's `chefs` and
/// `chef_identities` keep only those chefs, and the per-kitchen counters (which count every
/// chef's dumplings) are left out.
fn kitchen_entry_for_chefs<'a>(
    peer: &'a Peer,
    chefs: &std::collections::BTreeSet<String>,
    largest: usize,
) -> KitchenEntry<'a> {
    let mut entry = kitchen_entry(peer, largest);
    entry.info_from_hub.dumplings_in = None;
    entry.info_from_hub.dumplings_invalid = None;
    entry.info_from_hub.dumplings_refused = None;
    if peer.hello.get().len() > largest {
        // Listed cut: no chef list to narrow.
        return entry;
    }
    let Ok(serde_json::Value::Object(mut hello)) = serde_json::from_str(peer.hello.get()) else {
        return entry;
    };
    // `chefs` holds "<module>.<ClassName>" (original) or bare names.
    let allowed = |name: &str| chefs.contains(name.rsplit('.').next().unwrap_or(name));
    if let Some(serde_json::Value::Array(list)) = hello.get_mut("chefs") {
        list.retain(|c| c.as_str().is_some_and(allowed));
    }
    if let Some(serde_json::Value::Object(ids)) = hello.get_mut("chef_identities") {
        ids.retain(|name, _| chefs.contains(name));
    }
    if let Ok(raw) = serde_json::value::to_raw_value(&hello) {
        entry.info_from_kitchen = Cow::Owned(raw);
    }
    entry
}

/// [`build_status`] as seen by `view`, an eater principal restricted to some chefs or
/// kitchens; nothing in it counts or names what the principal may not see:
/// * kitchens: only those it may see (by their hello's `kitchen_name`); for a
///   chef-restricted principal their hellos list only its chefs and carry no per-kitchen
///   counters;
/// * eaters: only the eaters of the same principal;
/// * counts are those of the lists; `total_dumplings_out` is what the hub delivered to the
///   principal's connected eaters; `total_dumplings_in` is the sum of the visible kitchens'
///   `dumplings_in` when the principal sees all their chefs, else (the hub does not count
///   per chef) the same as `total_dumplings_out`.
pub fn build_status_for(
    shared: &Shared,
    must_list: Option<u64>,
    view: Option<&Principal>,
) -> String {
    let cap = shared.config.status_list_max;
    let view = view.filter(|p| p.is_restricted());
    let registry = shared.registry();
    let kitchen_visible = |peer: &&Arc<Peer>| match view.and_then(|v| v.kitchens.as_ref()) {
        None => true,
        Some(allowed) => hello_kitchen_name(peer).is_some_and(|k| allowed.contains(&k)),
    };
    let eater_visible = |peer: &&Arc<Peer>| match view {
        None => true,
        Some(v) => peer.principal.as_ref().is_some_and(|p| p.name == v.name),
    };
    let kitchen_count = registry.kitchens.values().filter(kitchen_visible).count();
    let eater_count = registry.eaters.values().filter(eater_visible).count();
    let kitchens: Vec<Arc<Peer>> = registry
        .kitchens
        .values()
        .filter(kitchen_visible)
        .take(cap)
        .cloned()
        .collect();
    let mut eaters: Vec<Arc<Peer>> = registry
        .eaters
        .values()
        .filter(eater_visible)
        .take(cap)
        .cloned()
        .collect();
    if let Some(id) = must_list {
        let listed = registry
            .eaters
            .iter()
            .filter(|(_, p)| eater_visible(p))
            .take(cap)
            .any(|(k, _)| *k == id);
        if !listed {
            if let Some(peer) = registry.eaters.get(&id) {
                if eaters.len() >= cap && !eaters.is_empty() {
                    eaters.pop();
                }
                eaters.push(peer.clone());
            }
        }
    }

    let (total_in, total_out) = match view {
        None => (
            shared.total_in.load(Ordering::Relaxed),
            shared.total_out.load(Ordering::Relaxed),
        ),
        Some(v) => {
            let out: u64 = registry
                .eaters
                .values()
                .filter(eater_visible)
                .map(|p| p.good.load(Ordering::Relaxed))
                .sum();
            let seen_in = match v.chefs {
                Some(_) => out,
                None => registry
                    .kitchens
                    .values()
                    .filter(kitchen_visible)
                    .map(|p| p.good.load(Ordering::Relaxed))
                    .sum(),
            };
            (seen_in, out)
        }
    };
    drop(registry);
    let chef_view = view.and_then(|v| v.chefs.as_ref());
    let sizes: Vec<usize> = kitchens
        .iter()
        .chain(&eaters)
        .map(|p| p.hello.get().len())
        .collect();
    let largest = fit_hellos(
        &sizes,
        HELLO_BUDGET_BYTES.saturating_sub(ENTRY_BYTES * sizes.len()),
    );
    let uptime = shared.started.elapsed().as_secs_f64();
    let payload: SystemStatus<Hello> = SystemStatus {
        total_dumplings_in: total_in,
        total_dumplings_out: total_out,
        // Microsecond precision, as the original.
        server_uptime: (uptime * 1e6).round() / 1e6,
        dumpling_kitchen_count: kitchen_count as u64,
        dumpling_eater_count: eater_count as u64,
        dumpling_kitchens: kitchens
            .iter()
            .map(|p| match chef_view {
                None => kitchen_entry(p, largest),
                Some(chefs) => kitchen_entry_for_chefs(p, chefs, largest),
            })
            .collect(),
        dumpling_eaters: eaters.iter().map(|p| eater_entry(p, largest)).collect(),
        fleet: shared.fleet_status.get().map(|board| board.section(view)),
    };
    let payload_text = serde_json::to_string(&payload).unwrap_or_else(|_| "{}".to_owned());
    envelope(dumpling::SYSTEM_STATUS_CHEF, &payload_text)
}

/// A `HubNoticeChef` dumpling telling an eater it missed `lagged` dumplings.
pub fn lag_notice(lagged: u64) -> Message {
    let payload = format!("{{\"lagged\":{lagged}}}");
    Message::text(envelope(dumpling::HUB_NOTICE_CHEF, &payload))
}

fn envelope(chef: &str, payload_text: &str) -> String {
    match dumpling::validate_payload(payload_text) {
        Ok(raw) => dumpling::encode_dumpling(chef, None, now_epoch(), Driver::Interval, &raw),
        // Cannot happen: the payload was serialised by serde_json just above.
        Err(_) => String::from("{}"),
    }
}

/// Publish a status dumpling every `status_freq`, the first one at once (as the original).
pub async fn status_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.status_freq);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.ring.receiver_count() > 0 {
            let status = build_status(&shared, None);
            if shared.config.auth.is_none() {
                shared.publish(Message::text(status));
                continue;
            }
            shared.publish_from(Message::text(status), Some(Arc::new(Origin::Status(None))));
            // One view per restricted eater principal that is connected.
            let mut views: Vec<Arc<Principal>> = Vec::new();
            for peer in shared.registry().eaters.values() {
                if let Some(p) = peer.principal.as_ref().filter(|p| p.is_restricted()) {
                    if !views.iter().any(|v| v.name == p.name) {
                        views.push(p.clone());
                    }
                }
            }
            for view in views {
                let status = build_status_for(&shared, None, Some(&view));
                let origin = Origin::Status(Some(view.name.as_str().into()));
                shared.publish_from(Message::text(status), Some(Arc::new(origin)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_share_the_budget_max_min_fair() {
        // All fit: everything whole.
        assert_eq!(fit_hellos(&[10, 20, 30], 100), usize::MAX);
        assert_eq!(fit_hellos(&[], 0), usize::MAX);
        // Small ones whole; the large ones share what is left equally.
        let largest = fit_hellos(&[10, 1000, 20, 5000], 1030);
        assert_eq!(largest, 500);
        // Never more than the budget, whatever the sizes.
        for sizes in [vec![1 << 20; 25], vec![5, 1 << 20, 7, 300_000, 900_000]] {
            let budget = 768 << 10;
            let largest = fit_hellos(&sizes, budget);
            let listed: usize = sizes.iter().filter(|s| **s <= largest).sum();
            assert!(listed <= budget, "{listed} > {budget}");
        }
    }

    #[test]
    fn a_cut_hello_keeps_a_cut_name_and_says_how_long_it_was() {
        let long = "k".repeat(10_000);
        let text = format!(r#"{{"kitchen_name": "{long}", "pad": "x"}}"#);
        let hello = crate::hello::parse_hello(text.as_bytes(), "kitchen_name").unwrap();
        let cut: serde_json::Value =
            serde_json::from_str(cut_hello(crate::Side::Kitchen, &hello).get()).unwrap();
        assert_eq!(cut["kitchen_name"].as_str().unwrap().len(), CUT_NAME_CHARS);
        assert_eq!(cut["nd_hello_cut"], true);
        assert_eq!(cut["nd_hello_bytes"], text.len());
        assert!(cut.get("pad").is_none());
    }
}
