//! Files a clinician picks for Haidy, read from our multipart form and checked before anything
//! is sent: at most `max_files`, each at most `max_file_bytes`, and each text, PDF, an image or
//! FHIR JSON *by its content* (a renamed program is not a PDF). Each refusal says why.

use axum::extract::Multipart;

use super::HaidySettings;
use crate::{error::AppError, ids::clean_text};

/// Largest whole form accepted on the upload routes (the per-file cap is a setting).
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A file that passed the checks.
pub struct Picked {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// A file refused before sending, and why (for the clinician).
pub struct Refused {
    pub filename: String,
    pub reason: String,
}

/// What the form carried.
#[derive(Default)]
pub struct FormInput {
    pub fields: Vec<(String, String)>,
    pub picked: Vec<Picked>,
    pub refused: Vec<Refused>,
}

impl FormInput {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The content type Haidy should receive, judged from the bytes; `None` when Haidy does not
/// take this kind of file.
pub fn sniff(filename: &str, bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 5] = [
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ];
    if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(kind);
    }
    if bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if text.contains('\0') {
        return None;
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(trimmed) {
            return Some(if json.get("resourceType").is_some() {
                "application/fhir+json"
            } else {
                "application/json"
            });
        }
    }
    let lower = filename.to_ascii_lowercase();
    if lower.ends_with(".exe") || lower.ends_with(".sh") || lower.ends_with(".bat") {
        return None;
    }
    Some("text/plain")
}

/// "20 MiB", "300 KiB", "512 bytes".
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

fn clean_filename(raw: Option<&str>) -> String {
    let base = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let name = clean_text(base, 150);
    if name.is_empty() {
        "document".into()
    } else {
        name
    }
}

/// Longest text field accepted (an email, a patient id), and how many of them.
const MAX_FIELD_BYTES: usize = 4096;
const MAX_FIELDS: usize = 16;

/// Reads the multipart form: text fields, and files under `files`, checked as they stream in.
pub async fn read(mut multipart: Multipart, limits: &HaidySettings) -> Result<FormInput, AppError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        AppError::BadRequest(format!("The form could not be read: {}", e.body_text()))
    };
    let mut input = FormInput::default();
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name != "files" {
            if input.fields.len() >= MAX_FIELDS {
                return Err(AppError::BadRequest("The form has too many fields.".into()));
            }
            // Read as it streams, and stop at the cap: a field is never buffered whole.
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if value.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(AppError::BadRequest(format!(
                        "The form field {:?} is too long.",
                        crate::ids::clean_text(&name, 40)
                    )));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value)
                .map_err(|_| AppError::BadRequest("A form field is not text.".into()))?;
            input.fields.push((name, value));
            continue;
        }
        let filename = clean_filename(field.file_name());
        if field.file_name().is_some_and(str::is_empty) {
            continue; // an empty file input
        }
        let mut bytes = Vec::new();
        let mut too_large = false;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if too_large {
                continue;
            }
            if bytes.len() + chunk.len() > limits.max_file_bytes {
                too_large = true;
                bytes = Vec::new();
                continue;
            }
            bytes.extend_from_slice(&chunk);
        }
        let refuse = |reason: String| Refused {
            filename: filename.clone(),
            reason,
        };
        if input.picked.len() >= limits.max_files {
            input.refused.push(refuse(format!(
                "Not sent: at most {} files at once.",
                limits.max_files
            )));
        } else if too_large {
            input.refused.push(refuse(format!(
                "Not sent: larger than {}.",
                human_size(limits.max_file_bytes)
            )));
        } else if bytes.is_empty() {
            input
                .refused
                .push(refuse("Not sent: the file is empty.".into()));
        } else {
            match sniff(&filename, &bytes) {
                Some(content_type) => input.picked.push(Picked {
                    filename,
                    content_type,
                    bytes,
                }),
                None => input.refused.push(refuse(
                    "Not sent: Haidy takes text, PDF, images and FHIR files only.".into(),
                )),
            }
        }
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_judged_by_their_content() {
        assert_eq!(sniff("a.pdf", b"%PDF-1.7\n..."), Some("application/pdf"));
        assert_eq!(sniff("a.png", b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(
            sniff("note.txt", "Befund: unauffällig".as_bytes()),
            Some("text/plain")
        );
        assert_eq!(
            sniff(
                "b.json",
                br#"{"resourceType": "Bundle", "type": "collection"}"#
            ),
            Some("application/fhir+json")
        );
        assert_eq!(sniff("fake.pdf", b"MZ\x90\x00\x03\x00\x00\x00"), None);
        assert_eq!(sniff("x.bin", &[0xff, 0xfe, 0x00, 0x01]), None);
        assert_eq!(sniff("run.sh", b"#!/bin/sh\nrm -rf /"), None);
    }

    #[test]
    fn filenames_lose_their_folders() {
        assert_eq!(clean_filename(Some("C:\\Users\\me\\lab.pdf")), "lab.pdf");
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(None), "document");
    }
}
