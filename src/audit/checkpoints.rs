//! Signed checkpoints: every practice's chain head (last sequence number and hash) at a time,
//! signed under the chain key and published outside the database: logged, and appended to a
//! file when `CHARTBRIDGE_AUDIT_CHECKPOINTS` names one. The operator ships either to
//! append-only storage; `chartbridge audit verify --checkpoints FILE` then finds what a chain
//! cannot show by itself: its last entries cut off (the head moved back with them), entries
//! rewritten under a stolen key, a practice's trail deleted whole.
//!
//! Heads that moved are published at start, every `checkpoint_every` (an hour by default) and
//! once more at shutdown, by every instance: the same head published twice is harmless.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{ChainKey, ChainKeys};
use crate::db::{Db, now_ms};

/// What every checkpoint line carries in its `checkpoint` field, so that it is found among
/// other log lines.
pub const MARK: &str = "chartbridge audit checkpoint";
/// What a checkpoint's signature is made for (no entry's MAC can pass for one).
const DOMAIN: &str = "chartbridge audit checkpoint v1";

/// One practice's head at a time, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub checkpoint: String,
    pub practice_id: String,
    /// The last entry's sequence number.
    pub seq: i64,
    /// The last entry's hash.
    pub head: String,
    /// When it was read (Unix ms).
    pub at: i64,
    /// Published with `--legacy` at the upgrade: it also vouches for entries chained before
    /// the chain was keyed (a plain checkpoint never does: anyone can write such entries).
    #[serde(default)]
    pub legacy: bool,
    /// The chain key it is signed under.
    pub key_id: String,
    pub sig: String,
}

impl Checkpoint {
    pub fn signed(
        key: &ChainKey,
        practice_id: &str,
        (seq, head): (i64, &str),
        at: i64,
        legacy: bool,
    ) -> Self {
        let sig = key.sign(DOMAIN, &parts(practice_id, seq, head, at, legacy));
        Checkpoint {
            checkpoint: MARK.to_string(),
            practice_id: practice_id.to_string(),
            seq,
            head: head.to_string(),
            at,
            legacy,
            key_id: key.id().to_string(),
            sig,
        }
    }

    /// Whether a key held here signed exactly this.
    pub fn holds(&self, keys: &ChainKeys) -> bool {
        keys.by_id(&self.key_id).is_some_and(|key| {
            let parts = parts(
                &self.practice_id,
                self.seq,
                &self.head,
                self.at,
                self.legacy,
            );
            key.verifies(DOMAIN, &parts, &self.sig)
        })
    }

    /// The line published (JSON).
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }
}

fn parts(practice_id: &str, seq: i64, head: &str, at: i64, legacy: bool) -> [Vec<u8>; 5] {
    [
        practice_id.as_bytes().to_vec(),
        seq.to_be_bytes().to_vec(),
        head.as_bytes().to_vec(),
        at.to_be_bytes().to_vec(),
        vec![u8::from(legacy)],
    ]
}

/// Publishes the heads that moved since this instance last did.
pub struct Publisher {
    db: Db,
    key: ChainKey,
    file: Option<PathBuf>,
    /// Practice → the last sequence number published.
    published: Mutex<HashMap<String, i64>>,
}

impl Publisher {
    pub fn new(db: Db, key: ChainKey, file: Option<PathBuf>) -> Self {
        Publisher {
            db,
            key,
            file,
            published: Mutex::default(),
        }
    }

    /// Reads every head and publishes those that moved; answers how many it published. A
    /// head on an entry from before the chain was keyed is not vouched for (anyone can write
    /// such a chain) unless `legacy` (`audit checkpoint --legacy`, once, at the upgrade).
    pub async fn publish(&self, legacy: bool) -> anyhow::Result<usize> {
        let heads: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT h.practice_id, h.seq, h.hash, e.key_id FROM audit_heads h \
             JOIN audit_events e ON e.practice_id = h.practice_id AND e.seq = h.seq \
             WHERE h.seq > 0 ORDER BY h.practice_id",
        )
        .fetch_all(self.db.writer())
        .await?;
        let (heads, unkeyed): (Vec<_>, Vec<_>) = heads
            .into_iter()
            .partition(|(_, _, _, key_id)| legacy || !key_id.is_empty());
        if !unkeyed.is_empty() {
            tracing::warn!(
                practices = unkeyed.len(),
                "chain heads from before the chain was keyed are not vouched for; run \
                 `chartbridge audit checkpoint --legacy` once after the upgrade"
            );
        }
        let heads: Vec<(String, i64, String)> = heads
            .into_iter()
            .map(|(p, seq, hash, _)| (p, seq, hash))
            .collect();
        let at = now_ms();
        let moved: Vec<Checkpoint> = {
            let published = self.published.lock().expect("not poisoned");
            heads
                .iter()
                .filter(|(practice, seq, _)| published.get(practice) != Some(seq))
                .map(|(practice, seq, hash)| {
                    Checkpoint::signed(&self.key, practice, (*seq, hash), at, legacy)
                })
                .collect()
        };
        if moved.is_empty() {
            return Ok(0);
        }
        let mut lines = String::new();
        for c in &moved {
            tracing::info!(
                target: "chartbridge::audit::checkpoint",
                checkpoint = MARK,
                practice_id = %c.practice_id,
                seq = c.seq,
                head = %c.head,
                at = c.at,
                legacy = c.legacy,
                key_id = %c.key_id,
                sig = %c.sig,
                "audit checkpoint"
            );
            lines.push_str(&c.line());
            lines.push('\n');
        }
        if let Some(path) = &self.file {
            let path = path.clone();
            tokio::task::spawn_blocking(move || append(&path, lines.as_bytes())).await??;
        }
        let mut published = self.published.lock().expect("not poisoned");
        for c in &moved {
            published.insert(c.practice_id.clone(), c.seq);
        }
        Ok(moved.len())
    }

    /// Publishes at once, then every `every` until `stop` turns true. The caller publishes once
    /// more after everything else has stopped (`Application::run_until_stopped`).
    pub async fn run(&self, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.publish(false).await {
                        tracing::error!(error = %e, "the audit checkpoints could not be published");
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

/// Appends to the file and waits until it is on disk.
fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// A practice's checkpoints by the sequence number each vouches for.
pub type Vouched = BTreeMap<i64, Vec<Checkpoint>>;

/// What a verification holds against the chains: each practice's checkpoints by sequence
/// number, and the lines that claimed to be checkpoints but are not signed by a key held here.
#[derive(Debug, Default, Clone)]
pub struct Published {
    pub by_practice: BTreeMap<String, BTreeMap<i64, Vec<Checkpoint>>>,
    /// "file:line: why".
    pub refused: Vec<String>,
    pub count: usize,
}

impl Published {
    /// Reads checkpoint files or shipped logs (lines without the mark are skipped).
    pub fn read(paths: &[PathBuf], keys: &ChainKeys) -> std::io::Result<Self> {
        let mut published = Published::default();
        for path in paths {
            let text = std::fs::read_to_string(path)?;
            for (n, line) in text.lines().enumerate() {
                if !line.contains(MARK) {
                    continue;
                }
                let place = format!("{}:{}", path.display(), n + 1);
                match serde_json::from_str::<Checkpoint>(line) {
                    Ok(c) if c.checkpoint == MARK && c.holds(keys) => {
                        published.count += 1;
                        published
                            .by_practice
                            .entry(c.practice_id.clone())
                            .or_default()
                            .entry(c.seq)
                            .or_default()
                            .push(c);
                    }
                    Ok(c) if keys.by_id(&c.key_id).is_none() => published.refused.push(format!(
                        "{place}: signed under key {}, which is not configured here",
                        c.key_id
                    )),
                    Ok(_) => published.refused.push(format!(
                        "{place}: its signature does not hold (forged or changed)"
                    )),
                    Err(_) => published
                        .refused
                        .push(format!("{place}: not a checkpoint (damaged)")),
                }
            }
        }
        Ok(published)
    }

    /// The practice's checkpoints, by sequence number.
    pub fn of(&self, practice_id: &str) -> Option<&Vouched> {
        self.by_practice.get(practice_id)
    }
}

/// A checkpoint's time, for people.
pub fn when(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretKey;

    #[test]
    fn a_checkpoint_holds_only_as_signed_and_only_under_a_key_held() {
        let keys = ChainKeys::new(&SecretKey([1; 32]), None, &[], &[]);
        let c = Checkpoint::signed(keys.current(), "pra-1", (7, "abc"), 1_000, false);
        let read: Checkpoint = serde_json::from_str(&c.line()).unwrap();
        assert!(read.holds(&keys));
        for changed in [
            Checkpoint {
                seq: 6,
                ..c.clone()
            },
            Checkpoint {
                head: "abd".into(),
                ..c.clone()
            },
            Checkpoint {
                practice_id: "pra-2".into(),
                ..c.clone()
            },
            Checkpoint {
                at: 1_001,
                ..c.clone()
            },
        ] {
            assert!(!changed.holds(&keys));
        }
        let others = ChainKeys::new(&SecretKey([2; 32]), None, &[], &[]);
        assert!(!c.holds(&others));
    }

    #[test]
    fn checkpoints_are_read_from_a_shipped_log_and_damaged_lines_are_named() {
        let keys = ChainKeys::new(&SecretKey([1; 32]), None, &[], &[]);
        let c = Checkpoint::signed(keys.current(), "pra-1", (3, "h3"), 5, false);
        let dir = std::env::temp_dir().join(crate::db::new_id("cp"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        // As the JSON log holds it: the checkpoint's fields beside the log's own.
        let logged = format!(
            "{{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"audit checkpoint\",{}",
            &c.line()[1..]
        );
        let forged = Checkpoint {
            seq: 9,
            ..c.clone()
        }
        .line();
        let text = format!("not json\n{logged}\n{forged}\n{{\"checkpoint\":\"{MARK}\"\n");
        std::fs::write(&path, text).unwrap();
        let read = Published::read(std::slice::from_ref(&path), &keys).unwrap();
        assert_eq!(read.count, 1);
        assert_eq!(read.of("pra-1").unwrap()[&3], vec![c]);
        assert_eq!(read.refused.len(), 2, "{:?}", read.refused);
        assert!(read.refused[0].ends_with(":3: its signature does not hold (forged or changed)"));
        assert!(read.refused[1].ends_with(":4: not a checkpoint (damaged)"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
