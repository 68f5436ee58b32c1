//! MediQuo's events: the envelope decoded, the consultation or report read out of it. Never a
//! panic; what is read always serialises and names a reference.
#![no_main]

use chartbridge::partners::mediquo::event::{Envelope, Incoming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    if let Ok(Some(incoming)) = Incoming::from_envelope(envelope, "0123abcd") {
        assert!(!incoming.reference.is_empty());
        serde_json::to_string(&incoming.result).expect("a result serialises");
    }
});
