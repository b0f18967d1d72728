//! Fuzz the hub's token and upgrade-header handling (`hub::auth`): the request target and
//! header lines of a WebSocket upgrade are built from the input, then the token is looked
//! for (header, subprotocol, query) and checked against a table that knows one token; the
//! input's text is also parsed as an auth file. Invariants: nothing panics; a found token
//! is non-empty, at most `MAX_TOKEN_BYTES`, and a piece of what the client sent; only the
//! known token maps to a principal.
#![no_main]

use std::path::Path;

use hub::auth::{hash_token, offers_subprotocol, token_from_request, Table, MAX_TOKEN_BYTES};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::http::Request;

const KNOWN_TOKEN: &str = "fuzz-known-token";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Also an auth file: parsing must refuse or accept, never panic.
    let _ = Table::parse(text, Path::new("fuzz.toml"));

    // First line: the request target; every further line `name: value`.
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut builder = Request::builder().uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let _ = offers_subprotocol(&request);
    let Some((token, _source)) = token_from_request(&request) else {
        return;
    };
    assert!(!token.is_empty() && token.len() <= MAX_TOKEN_BYTES);
    assert!(
        text.contains(token),
        "a token the client did not send: {token:?}"
    );

    let hash: String = hash_token(KNOWN_TOKEN)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = format!(
        "[[principal]]\nname = \"k\"\nrole = \"kitchen\"\ntoken_sha256 = \"{hash}\"\nkitchens = [\"k\"]\n"
    );
    let table = Table::parse(&file, Path::new("known.toml")).expect("the known table parses");
    assert_eq!(table.lookup(token).is_some(), token == KNOWN_TOKEN);
});
