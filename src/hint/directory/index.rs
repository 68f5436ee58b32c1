//! A practice's patients as search holds them: each name folded once (case, accents and
//! punctuation aside) into words, every word pointing back at its patient, sorted so that the
//! patients whose words start with what was typed are found by bisection.

use std::collections::HashMap;

use crate::hint::client::Patient;

/// A patient as search holds it: the name's words folded once.
pub(super) struct Entry {
    pub(super) patient: Patient,
    pub(super) words: Vec<String>,
}

impl Entry {
    pub(super) fn new(patient: Patient) -> Self {
        let mut names = fold(&patient.display_name());
        if let Some(name) = patient.name.as_deref() {
            names.push(' ');
            names.push_str(&fold(name));
        }
        let mut words: Vec<String> = names.split_whitespace().map(String::from).collect();
        // A double name is found by either part ("mora" finds "Quist-Mora").
        let parts: Vec<String> = words
            .iter()
            .filter(|w| w.contains('-'))
            .flat_map(|w| w.split('-').filter(|p| !p.is_empty()).map(String::from))
            .collect();
        words.extend(parts);
        words.sort();
        words.dedup();
        Self { patient, words }
    }

    /// Whether the patient is what a clinician typed: every word of `typed` starts a word of
    /// the name (any order), or is the date of birth (`1984-03-12`, `12/03/1984`, `1984`); or
    /// the query is the id.
    pub(super) fn matches(&self, query: &str, typed: &[String]) -> bool {
        if self.patient.id.eq_ignore_ascii_case(query) {
            return true;
        }
        let dob = self.patient.dob.as_deref().unwrap_or_default();
        !typed.is_empty()
            && typed.iter().all(|word| {
                self.words.iter().any(|n| n.starts_with(word.as_str()))
                    // Only a word that starts with a digit can be a date.
                    || (word.as_bytes()[0].is_ascii_digit() && !dob.is_empty() && dob_matches(dob, word))
            })
    }
}

/// A practice's patients sorted by name, with every name word pointing back at its patient
/// (sorted, so the patients whose words start with what was typed are found by bisection).
pub(super) struct Index {
    pub(super) entries: Vec<Entry>,
    words: Vec<(String, u32)>,
    /// Each patient's place in `entries`, by id.
    by_id: HashMap<String, u32>,
}

impl Index {
    pub(super) fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by_cached_key(|e| fold(&e.patient.display_name()));
        let mut words: Vec<(String, u32)> = entries
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.words.iter().map(move |w| (w.clone(), i as u32)))
            .collect();
        words.sort_unstable();
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.patient.id.clone(), i as u32))
            .collect();
        Self {
            entries,
            words,
            by_id,
        }
    }

    pub(super) fn get(&self, patient_id: &str) -> Option<&Entry> {
        self.by_id
            .get(patient_id)
            .map(|i| &self.entries[*i as usize])
    }

    /// The patients matching, in name order: `each` is called for every one.
    pub(super) fn find(&self, query: &str, typed: &[String], mut each: impl FnMut(&Entry)) {
        // A Hint id as Hint writes it: looked up directly.
        if let Some(entry) = self.get(query) {
            each(entry);
            return;
        }
        // The longest word that is not a date narrows the search to the patients with a name
        // word starting with it; an id or dates alone are looked for in every patient.
        let key = typed
            .iter()
            .filter(|w| !w.as_bytes()[0].is_ascii_digit())
            .max_by_key(|w| w.len());
        let Some(key) = key.filter(|_| !query.starts_with("pat-")) else {
            self.entries
                .iter()
                .filter(|e| e.matches(query, typed))
                .for_each(each);
            return;
        };
        let from = self
            .words
            .partition_point(|(w, _)| w.as_str() < key.as_str());
        let mut candidates: Vec<u32> = self.words[from..]
            .iter()
            .take_while(|(w, _)| w.starts_with(key.as_str()))
            .map(|(_, i)| *i)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        for i in candidates {
            let entry = &self.entries[i as usize];
            if entry.matches(query, typed) {
                each(entry);
            }
        }
    }
}

/// Lower case, accents off, punctuation to spaces: how names are compared in search.
pub(super) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let plain = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ā' | 'ą' => "a",
            'æ' => "ae",
            'ç' | 'ć' | 'č' => "c",
            'ď' | 'đ' => "d",
            'é' | 'è' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
            'í' | 'ì' | 'î' | 'ï' | 'ī' | 'ı' => "i",
            'ł' => "l",
            'ñ' | 'ń' | 'ň' => "n",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ō' | 'ő' => "o",
            'œ' => "oe",
            'ř' => "r",
            'ß' => "ss",
            'ś' | 'š' | 'ş' => "s",
            'ť' | 'ţ' => "t",
            'ú' | 'ù' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            c if c.is_alphanumeric() || c == '-' || c == '/' => {
                out.push(c);
                continue;
            }
            _ => " ",
        };
        out.push_str(plain);
    }
    out
}

/// A date of birth (`YYYY-MM-DD`) and a typed word: the whole date, or `DD/MM/YYYY`,
/// `MM/DD/YYYY`, or the year.
fn dob_matches(dob: &str, word: &str) -> bool {
    if word == dob || (word.len() == 4 && dob.starts_with(word)) {
        return true;
    }
    let parts: Vec<&str> = word.split('/').collect();
    if let [a, b, year] = parts[..] {
        let pad = |s: &str| format!("{s:0>2}");
        return [
            format!("{year}-{}-{}", pad(b), pad(a)),
            format!("{year}-{}-{}", pad(a), pad(b)),
        ]
        .iter()
        .any(|d| d == dob);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hint::client::Patient;

    fn patient(id: &str, first: &str, last: &str, dob: &str) -> Entry {
        Entry::new(Patient {
            id: id.into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            dob: Some(dob.into()),
            ..Patient::default()
        })
    }

    fn names(index: &Index, query: &str) -> Vec<String> {
        let typed: Vec<String> = fold(query).split_whitespace().map(String::from).collect();
        let mut found = Vec::new();
        index.find(query, &typed, |e| found.push(e.patient.display_name()));
        found
    }

    #[test]
    fn the_word_index_finds_what_a_full_scan_finds_in_name_order() {
        let index = Index::new(vec![
            patient("pat-3", "Zoë", "Quist-Mora", "1970-01-01"),
            patient("pat-1", "Ava", "Thompson", "1984-03-12"),
            patient("pat-2", "Avery", "Thomas", "1990-07-04"),
            patient("pat-4", "Sofía", "Martínez", "1992-06-25"),
        ]);
        assert_eq!(names(&index, "av"), ["Ava Thompson", "Avery Thomas"]);
        assert_eq!(names(&index, "thom av"), ["Ava Thompson", "Avery Thomas"]);
        assert_eq!(names(&index, "thompson"), ["Ava Thompson"]);
        assert_eq!(names(&index, "mora"), ["Zoë Quist-Mora"]);
        assert_eq!(names(&index, "zoe quist-m"), ["Zoë Quist-Mora"]);
        assert_eq!(names(&index, "sofia 1992"), ["Sofía Martínez"]);
        assert_eq!(names(&index, "12/03/1984"), ["Ava Thompson"]);
        assert_eq!(names(&index, "pat-4"), ["Sofía Martínez"]);
        assert!(names(&index, "hompson").is_empty());
        for query in ["a", "th", "1984", "quist", "martinez sof", "x"] {
            let typed: Vec<String> = fold(query).split_whitespace().map(String::from).collect();
            let scanned: Vec<String> = index
                .entries
                .iter()
                .filter(|e| e.matches(query, &typed))
                .map(|e| e.patient.display_name())
                .collect();
            assert_eq!(names(&index, query), scanned, "{query}");
        }
    }

    /// Whether `entry` is what a clinician typed, as search asks it.
    fn typed(entry: &Entry, query: &str) -> bool {
        let typed: Vec<String> = fold(query).split_whitespace().map(String::from).collect();
        entry.matches(query.trim(), &typed)
    }

    #[test]
    fn search_takes_words_in_any_order_without_accents_and_dates_of_birth() {
        let ava = patient("pat-1", "Ava", "Thompson", "1984-03-12");
        let sofia = patient("pat-2", "Sofía", "Martínez", "1992-06-25");
        for query in [
            "thompson ava",
            "Ava",
            "thom",
            "AVA THOMPSON",
            "1984-03-12",
            "12/03/1984",
            "03/12/1984",
            "1984",
            "ava 1984",
            "pat-1",
        ] {
            assert!(typed(&ava, query), "{query}");
        }
        for query in ["sofia", "sofía", "martinez sof", "MARTÍNEZ"] {
            assert!(typed(&sofia, query), "{query}");
        }
        for query in ["ava smith", "hompson", "1985", "", "  "] {
            assert!(!typed(&ava, query), "{query}");
        }
    }
}
