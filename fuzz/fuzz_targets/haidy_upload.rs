//! The Haidy upload form as it streams in: any multipart body is read within the limits (no
//! file over the size cap or of a kind Haidy does not take is picked, no more files than
//! allowed, text fields capped) or refused with an error; never a panic.
#![no_main]

use axum::{body::Body, extract::FromRequest, extract::Multipart, http::Request};
use chartbridge::partners::haidy::{HaidyArgs, HaidySettings, files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut limits = HaidySettings::from_args(HaidyArgs {
        haidy_api_url: "https://api.44ai.ch".into(),
        haidy_app_url: "https://haidy.ch/integration".into(),
    })
    .unwrap();
    limits.max_file_bytes = 4096;
    limits.max_files = 3;
    let request = Request::builder()
        .method("POST")
        .header("content-type", "multipart/form-data; boundary=fuzzboundary")
        .body(Body::from(data.to_vec()))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Ok(multipart) = Multipart::from_request(request, &()).await else {
            return;
        };
        if let Ok(input) = files::read(multipart, &limits).await {
            assert!(input.picked.len() <= limits.max_files);
            for file in &input.picked {
                assert!(!file.bytes.is_empty() && file.bytes.len() <= limits.max_file_bytes);
                assert_eq!(files::sniff(&file.filename, &file.bytes), Some(file.content_type));
                assert!(!file.filename.contains('/') && !file.filename.contains('\\'));
            }
            assert!(input.fields.len() <= 16);
            assert!(input.fields.iter().all(|(_, v)| v.len() <= 4096));
        }
    });
});
