//! Tiep's saved report, as its webhook delivers it: decoded, its patient read, turned into the
//! result we store. Never a panic; a result always serialises.
#![no_main]

use chartbridge::partners::tiep::webhook::TiepReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = serde_json::from_slice::<TiepReport>(data) else {
        return;
    };
    let _ = report.patient_id();
    if let Ok(result) = report.into_result() {
        serde_json::to_string(&result).expect("a result serialises");
    }
});
