//! Hint's handshake: the signature check on raw bytes, then the permissive decode.
//! Any header with any body is refused unless it is that body's own signature; a signed body
//! decodes without a panic, and the ids it yields are clean.
#![no_main]

use chartbridge::{
    crypto::{sign_hmac_sha256, verify_hmac_sha256},
    hint::handshake::HandshakePayload,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-hint-webhook-secret-0001";

fuzz_target!(|data: &[u8]| {
    // The first line is the header, the rest the body.
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = std::str::from_utf8(header).ok();
    let own = sign_hmac_sha256(SECRET, body);
    if verify_hmac_sha256(SECRET, header, body).is_ok() {
        let presented = header.unwrap().trim().to_ascii_lowercase();
        assert_eq!(presented, own, "only the body's own signature is accepted");
    }
    assert!(verify_hmac_sha256(SECRET, Some(&own), body).is_ok());
    if let Ok(payload) = serde_json::from_slice::<HandshakePayload>(body) {
        for id in [payload.user.id.as_str(), payload.practice.id.as_str()] {
            assert!(!id.is_empty() && !id.chars().any(char::is_control), "{id:?}");
        }
    }
});
