//! Hello parsing for kitchens and eaters (pure functions; fuzzed by `fuzz/`).
//!
//! A hello must be a JSON object with the name key (`kitchen_name` or `eater_name`). The
//! whole object is kept verbatim (key order and unknown keys included) to be republished
//! in status dumplings as `info_from_kitchen` / `info_from_eater`.

use serde_json::value::RawValue;
use serde_json::Value;

/// Why a hello was refused. The `Display` text is the close reason sent to the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// Not JSON at all.
    #[error("bad hello: not JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("bad hello: not a JSON object")]
    NotAnObject,
    /// An object without the name key.
    #[error("bad hello: no {0}")]
    NoName(&'static str),
    /// No hello arrived in time.
    #[error("bad hello: none within {0} s")]
    Timeout(u64),
    /// A control or close frame came where the hello should be.
    #[error("bad hello: connection closed first")]
    Closed,
    /// Under `--auth`: the hello's `kitchen_name` is not a name the connection's principal
    /// may send as (its dumplings would be refused, but the hello would have been listed
    /// in status dumplings, logs and `/metrics` under that name). Both names are escaped
    /// and cut so the reason fits a close frame (123 bytes).
    #[error("bad hello: kitchen_name {name} not allowed for principal {principal}")]
    NameNotAllowed {
        /// The name the hello gave, escaped and cut.
        name: String,
        /// The principal's name, escaped and cut.
        principal: String,
    },
}

/// Under `--auth`, check a kitchen hello's name against what its principal may send as
/// ([`crate::auth::Principal::may_send_as`], the rule every dumpling's `metadata.kitchen`
/// is held to), so a kitchen is listed only under a name it may use.
pub fn check_kitchen_name(
    hello: &Hello,
    principal: &crate::auth::Principal,
) -> Result<(), HelloError> {
    if principal.may_send_as(Some(&hello.name)) {
        return Ok(());
    }
    Err(HelloError::NameNotAllowed {
        name: quoted_short(&hello.name),
        principal: quoted_short(&principal.name),
    })
}

/// `"name"`, escaped and cut to at most 32 bytes, so two of them and the words around
/// them fit a close reason (123 bytes): an escape is up to 8 bytes per character.
fn quoted_short(name: &str) -> String {
    const MAX: usize = 28;
    let mut shown = dumpling::text::escape(name, 16);
    if shown.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// A valid hello.
#[derive(Debug, Clone)]
pub struct Hello {
    /// The name, for logs: the string value, or the JSON text of a non-string value.
    pub name: String,
    /// The whole hello object, verbatim.
    pub raw: Box<RawValue>,
}

/// A peer's name as the hub's log shows it: control and bidi characters escaped, cut at 64
/// characters (a hello may be a megabyte, and a name with a line break would forge a line).
pub fn shown_name(name: &str) -> String {
    dumpling::text::escape(name, 64)
}

/// Parse a hello whose name lives under `name_key`.
pub fn parse_hello(message: &[u8], name_key: &'static str) -> Result<Hello, HelloError> {
    let raw: Box<RawValue> = serde_json::from_slice(message).map_err(|_| HelloError::NotJson)?;
    let value: Value = serde_json::from_str(raw.get()).map_err(|_| HelloError::NotJson)?;
    let object = value.as_object().ok_or(HelloError::NotAnObject)?;
    let name = match object.get(name_key) {
        None | Some(Value::Null) => return Err(HelloError::NoName(name_key)),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // Keep the raw text without surrounding whitespace (RawValue already trims it).
    Ok(Hello { name, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_keys_in_order() {
        let hello = parse_hello(
            br#" {"kitchen_name": "k", "zeta": 1, "alpha": [1, 2]} "#,
            "kitchen_name",
        )
        .unwrap();
        assert_eq!(hello.name, "k");
        assert_eq!(
            hello.raw.get(),
            r#"{"kitchen_name": "k", "zeta": 1, "alpha": [1, 2]}"#
        );
    }

    #[test]
    fn refuses_bad_hellos() {
        assert_eq!(
            parse_hello(b"nope", "eater_name").unwrap_err(),
            HelloError::NotJson
        );
        assert_eq!(
            parse_hello(b"[1]", "eater_name").unwrap_err(),
            HelloError::NotAnObject
        );
        assert_eq!(
            parse_hello(br#"{"name": "x"}"#, "eater_name").unwrap_err(),
            HelloError::NoName("eater_name")
        );
        assert_eq!(
            parse_hello(br#"{"eater_name": null}"#, "eater_name").unwrap_err(),
            HelloError::NoName("eater_name")
        );
        assert_eq!(
            HelloError::NoName("eater_name").to_string(),
            "bad hello: no eater_name"
        );
    }

    #[test]
    fn shown_names_cannot_forge_or_flood_a_log_line() {
        let name = "k\u{1b}]0;t\u{7}\r\n2099-01-01 ERROR spoofed\u{202e}".to_owned()
            + &"x".repeat(1 << 20);
        let shown = shown_name(&name);
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown:?}"
        );
        assert!(
            shown.starts_with(r"k\x1b]0;t\x07\r\n2099-01-01 ERROR spoofed\u{202e}"),
            "{shown}"
        );
        assert!(shown.len() < 200, "{}", shown.len());
        assert_eq!(shown_name("default_kitchen"), "default_kitchen");
    }

    #[test]
    fn a_kitchen_hello_must_use_a_name_its_principal_may_send_as() {
        let principal = |role, kitchens: Option<&[&str]>| crate::auth::Principal {
            name: "sensor-a".into(),
            role,
            token_sha256: Some([0; 32]),
            cert_name: None,
            kitchens: kitchens.map(|k| k.iter().map(|s| s.to_string()).collect()),
            chefs: None,
        };
        let kitchen = principal(crate::auth::Role::Kitchen, Some(&["sensor-a", "lab"]));
        let hello = |name: &str| {
            parse_hello(
                serde_json::json!({ "kitchen_name": name })
                    .to_string()
                    .as_bytes(),
                "kitchen_name",
            )
            .unwrap()
        };
        assert_eq!(check_kitchen_name(&hello("sensor-a"), &kitchen), Ok(()));
        assert_eq!(check_kitchen_name(&hello("lab"), &kitchen), Ok(()));
        let refused = check_kitchen_name(&hello("sensor-b"), &kitchen).unwrap_err();
        assert_eq!(
            refused.to_string(),
            r#"bad hello: kitchen_name "sensor-b" not allowed for principal "sensor-a""#
        );
        let long = "\u{1b}".repeat(500);
        let reason = check_kitchen_name(&hello(&long), &kitchen)
            .unwrap_err()
            .to_string();
        assert!(
            reason.len() <= 123 && !reason.contains('\u{1b}'),
            "{reason}"
        );
        let admin = principal(crate::auth::Role::Admin, None);
        assert_eq!(check_kitchen_name(&hello("anything"), &admin), Ok(()));
    }

    #[test]
    fn non_string_names_are_accepted_like_the_original() {
        let hello = parse_hello(br#"{"eater_name": 7}"#, "eater_name").unwrap();
        assert_eq!(hello.name, "7");
    }
}
