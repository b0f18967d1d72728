//! [`ChefText`]: a chef's returned `string`, lifted out of its memory with the UTF-8 check
//! done by `simdutf8` instead of `core::str::from_utf8`.
//!
//! Why: `on-interval` answers are the largest text a chef returns (DNSLookupChef's ~40 KB
//! `lookups_seen` table on every poke of a mixed capture, ~560 MB a replay), and wasmtime's
//! own `String` lift checks it with `core::str::from_utf8` (6 % of a replay's CPU). The
//! check is the same (every byte, valid UTF-8 or the call fails); only the routine is
//! faster. The bounds, alignment and fuel checks are wasmtime's own: the string is first
//! lifted as a [`WasmStr`], and a string in any encoding but UTF-8 is lifted by
//! wasmtime's `String` lift, so nothing but the UTF-8 routine differs.
//!
//! A string byte-identical to the chef's last checked interval payload, lent to this
//! thread's lifts for one call ([`lend`]), is compared where it lies in the chef's memory
//! and given back as that payload ([`ChefText::Repeat`]): neither copied nor checked
//! again. Most pokes of a mixed capture send the same ~40 KB table as the last one (83 %).
//!
//! This implements wasmtime's lifting traits by hand (their items are public but hidden
//! from its docs, for its derive macros), pinned with wasmtime itself (`=48.0.8`).

use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmStr};

/// A component `string` returned by a chef (see the module docs).
#[derive(Debug)]
pub enum ChefText {
    /// Its text, checked as UTF-8 and copied out.
    Text(String),
    /// The same bytes as the payload lent for this call ([`lend`]), which passed the
    /// payload check before: that payload, given back.
    Repeat(dumpling::CheckedPayload),
}

impl ChefText {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            ChefText::Text(t) => t,
            ChefText::Repeat(p) => p.text(),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// The text as a `String`.
    pub fn into_string(self) -> String {
        match self {
            ChefText::Text(t) => t,
            ChefText::Repeat(p) => p.text().to_owned(),
        }
    }
}

thread_local! {
    /// The checked payload lent to the lifts of the call running on this thread.
    static LOAN: std::cell::RefCell<Option<dumpling::CheckedPayload>> =
        const { std::cell::RefCell::new(None) };
}

/// Lend `payload` to the lifts of the next call on this thread; [`take_loan`] after the
/// call, whatever its result, takes it back when no string matched it.
pub fn lend(payload: Option<dumpling::CheckedPayload>) {
    LOAN.with(|l| *l.borrow_mut() = payload);
}

/// The lent payload, when no lifted string took it.
pub fn take_loan() -> Option<dumpling::CheckedPayload> {
    LOAN.with(|l| l.borrow_mut().take())
}

/// The lent payload, taken, when `bytes` are exactly its text.
fn take_if_same(bytes: &[u8]) -> Option<dumpling::CheckedPayload> {
    LOAN.with(|l| {
        let mut l = l.borrow_mut();
        if l.as_ref()?.text().as_bytes() == bytes {
            l.take()
        } else {
            None
        }
    })
}

#[allow(unsafe_code)]
// SAFETY: the ABI and lowered form are `WasmStr`'s (a pointer/length pair), and the type
// check is its own: this type is lifted from exactly what a `WasmStr` is lifted from.
unsafe impl ComponentType for ChefText {
    type Lower = <WasmStr as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <WasmStr as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmStr as ComponentType>::typecheck(ty, types)
    }
}

#[allow(unsafe_code)]
// SAFETY: each lift reads only what wasmtime's own lift of the same value reads, after
// wasmtime checked it (bounds, alignment, fuel), and copies it out.
unsafe impl Lift for ChefText {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        if cx.options().string_encoding != StringEncoding::Utf8 {
            return <String as Lift>::linear_lift_from_flat(cx, ty, src).map(ChefText::Text);
        }
        <WasmStr as Lift>::linear_lift_from_flat(cx, ty, src)?;
        // The flat form is (pointer, length), as wasmtime reads it.
        let ptr = src[0].get_u32() as usize;
        let len = src[1].get_u32() as usize;
        copy_utf8(cx.memory(), ptr, len)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        if cx.options().string_encoding != StringEncoding::Utf8 {
            return <String as Lift>::linear_lift_from_memory(cx, ty, bytes).map(ChefText::Text);
        }
        <WasmStr as Lift>::linear_lift_from_memory(cx, ty, bytes)?;
        // In memory: a little-endian u32 pointer, then a u32 length.
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize)
        };
        let (Some(ptr), Some(len)) = (word(0), word(4)) else {
            wasmtime::bail!("string pointer/length out of bounds of the record");
        };
        copy_utf8(cx.memory(), ptr, len)
    }
}

/// `len` bytes at `ptr` in `memory`: the lent payload when they are its text, else
/// checked as UTF-8 and copied out.
fn copy_utf8(memory: &[u8], ptr: usize, len: usize) -> wasmtime::Result<ChefText> {
    let Some(bytes) = ptr.checked_add(len).and_then(|end| memory.get(ptr..end)) else {
        wasmtime::bail!("string pointer/length out of bounds of memory");
    };
    if let Some(lent) = take_if_same(bytes) {
        return Ok(ChefText::Repeat(lent));
    }
    utf8_text(bytes).map(ChefText::Text)
}

/// `bytes` as a `String` when they are UTF-8; the error is `core::str::from_utf8`'s (so
/// a failed call reads as it did with wasmtime's own lift).
pub fn utf8_text(bytes: &[u8]) -> wasmtime::Result<String> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        // Only on failure: the standard routine says where and why.
        Err(_) => Err(std::str::from_utf8(bytes).map(drop).err().map_or_else(
            || wasmtime::format_err!("invalid UTF-8"),
            wasmtime::Error::from,
        )),
    }
}

/// `bytes` as a `String` when they are UTF-8 (checked by `simdutf8`, no copy); the bytes
/// back when they are not.
pub fn utf8_string(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    if simdutf8::basic::from_utf8(&bytes).is_err() {
        return Err(bytes);
    }
    #[allow(unsafe_code)]
    // SAFETY: `simdutf8` just checked that every byte is UTF-8 (its `basic` check accepts
    // exactly what `core::str::from_utf8` accepts; the tests compare the two).
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

/// `bytes` as text when they are UTF-8, checked by `simdutf8`; the error is
/// `core::str::from_utf8`'s (where the first bad byte is).
pub fn utf8_str(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_checked_like_the_standard_routine() {
        let mut samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"{\"lookups_seen\":{}}".to_vec(),
            "é ✓ 😀 \u{7f}\u{0}".as_bytes().to_vec(),
            vec![0xff],
            vec![0xc3],
            vec![0xe2, 0x9c],
            vec![0xed, 0xa0, 0x80],       // a UTF-16 surrogate, not UTF-8
            vec![0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
            vec![0xc0, 0x80],             // overlong
        ];
        // Long text with one bad byte at every position of a 70-byte window (simdutf8
        // works in 64-byte blocks).
        let long = "x".repeat(60) + "é✓😀" + &"y".repeat(60);
        samples.push(long.clone().into_bytes());
        for at in 0..70 {
            for bad in [0x80u8, 0xff, 0xc3] {
                let mut b = long.clone().into_bytes();
                b[at + 30] = bad;
                samples.push(b);
            }
        }
        for b in samples {
            let want = std::str::from_utf8(&b).map(str::to_owned);
            let got = utf8_text(&b);
            assert_eq!(utf8_string(b.clone()).ok(), want.as_ref().ok().cloned());
            assert_eq!(utf8_str(&b).map(str::to_owned), want);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g),
                (Err(w), Err(g)) => assert_eq!(w.to_string(), g.to_string()),
                (w, g) => panic!("{b:?}: {w:?} vs {g:?}"),
            }
        }
    }
}
