//! Fuzz the packet parser: the first two bytes pick a link type, the rest is the frame.
//! Invariants: no panic, and every span lies inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

const LINK_TYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 105];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link_type = LINK_TYPES[selector as usize % LINK_TYPES.len()];
    let p = kitchen::parse::packet::parse_frame(link_type, frame);
    for s in [&p.payload, &p.padding] {
        assert!(s.offset as usize + s.len as usize <= frame.len());
    }
});
