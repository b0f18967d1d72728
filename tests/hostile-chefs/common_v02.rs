// Shared by the chef API 0.2 hostile chefs (stream chunks, flow events): `include!`d right
// after `wit_bindgen::generate!` on `wit/chef.wit` (0.2). `common.rs` is for the 0.1 ones.

#[allow(unused_imports)]
use exports::netdumplings::chef::handler::Guest;
#[allow(unused_imports)]
use netdumplings::chef::types::{
    BatchForm, ChefInfo, Drivers, FlowEvent, Interest, Packet, PacketDumpling, StreamChunk,
};

/// The chef-info of a 0.2 hostile chef: interval driver only (no packet calls), and the
/// flow events / stream bytes it asks for.
#[allow(dead_code)]
fn info_v02(name: &str, description: &str, flow_events: bool, stream_bytes: u32) -> ChefInfo {
    ChefInfo {
        name: name.to_owned(),
        description: description.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        drivers: Drivers::INTERVAL,
        interest: Interest {
            link_types: Vec::new(),
            network: Vec::new(),
            transport: Vec::new(),
            ports: Vec::new(),
            flow_events,
            stream_bytes,
        },
        batch_form: BatchForm::Records,
    }
}

/// The one chef of the component.
struct HostileChef;

export!(HostileChef);
