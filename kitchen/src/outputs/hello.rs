//! The kitchen hello's chef list, kept current across hot reloads.
//!
//! The hello (original §3.3) lists the chefs as `"<module>.<ClassName>"` strings (`chefs`,
//! unchanged for original eaters); netdumplings-rs adds `chef_identities`: per chef name its
//! source, version, component SHA-256 and signing key id (the same fields as the chef's entry
//! in a `KitchenStatusChef` dumpling), so an eater can tell which exact code made a dumpling.
//!
//! The hub reads one hello per connection and shows it verbatim in `SystemStatusChef`'s
//! `dumpling_kitchens`; it accepts no second hello on a connection (anything after the hello
//! is a dumpling). So after a reload the kitchen gives the hub client the new hello, which
//! is sent on the next (re)connection, and the `KitchenStatusChef` dumpling of every poke
//! carries the current list in the meantime.

use dumpling::KitchenHello;
use serde_json::{json, Map, Value};

use crate::dispatch::lane::NamedChef;

/// Builds hellos: the kitchen's fixed keys plus the current chefs.
#[derive(Debug, Clone)]
pub struct HelloBuilder {
    base: KitchenHello,
}

impl HelloBuilder {
    /// `base` holds every key but the chef lists (`kitchen_name`, `interface`, ...).
    pub fn new(base: KitchenHello) -> Self {
        HelloBuilder { base }
    }

    /// The hello for these running chefs.
    pub fn build<C: NamedChef>(&self, chefs: &[C]) -> KitchenHello {
        let mut names: Vec<&str> = chefs.iter().map(NamedChef::qualified_name).collect();
        names.sort_unstable();
        let mut hello = self.base.clone();
        hello.extra.insert("chefs".into(), json!(names));
        hello
            .extra
            .insert("chef_identities".into(), identities(chefs));
        hello
    }

    /// [`HelloBuilder::build`] as the text sent to the hub.
    pub fn build_text<C: NamedChef>(&self, chefs: &[C]) -> String {
        serde_json::to_string(&self.build(chefs)).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// `{name: {source, version, sha256, key_id?}}` for the running chefs.
pub fn identities<C: NamedChef>(chefs: &[C]) -> Value {
    let mut out = Map::new();
    for s in chefs {
        let c = s.chef();
        let p = c.provenance();
        let mut id = json!({
            "source": c.source().to_string(),
            "version": c.description().version,
            "sha256": p.sha256,
        });
        if let Some(k) = &p.key_id {
            id["key_id"] = json!(k);
        }
        out.insert(c.name().to_owned(), id);
    }
    Value::Object(out)
}
