//! The partner tools a clinician can launch. Each partner is one module: its client, its
//! configuration section, its settings form and routes, its templates (`templates/partners/`
//! `<id>_*.html`), its visit data and its page; the fake that stands in for it lives in the
//! sandbox crate. The four partners have four shapes:
//!
//! | partner   | launch                         | result                                   |
//! |-----------|--------------------------------|------------------------------------------|
//! | Tiep      | one click → tokenised URL      | signed webhook, poll as backstop         |
//! | HCW@Home  | form in our frame → invite     | poll; the clinician finishes in our frame |
//! | Haidy     | form in our frame → file upload | poll approved consultations              |
//! | MediQuo   | none (inbound only)            | webhook creates the visit, complete      |
//!
//! [`registry`] is the one list of partners: routes, settings, launch buttons and lookups by
//! id all come from it. Adding a partner: `docs/adding-a-partner.md`.

pub mod connection;
pub mod haidy;
pub mod hcw;
pub mod mediquo;
pub mod tiep;
pub mod unmatched;

use std::sync::Arc;

use crate::{config::ConfigError, upstream::Upstream, visits::Partners};

/// Every partner's configuration from the environment (flattened into the command line).
#[derive(clap::Args, Debug, Clone)]
pub struct PartnerArgs {
    #[command(flatten)]
    pub tiep: tiep::TiepArgs,
    #[command(flatten)]
    pub haidy: haidy::HaidyArgs,
}

impl PartnerArgs {
    /// Reads the partners' flags as `chartbridge serve` takes them (`--tiep-api-url …`); the
    /// environment and the defaults fill in the rest.
    pub fn from_flags(flags: impl IntoIterator<Item = String>) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            partners: PartnerArgs,
        }
        let args = std::iter::once("chartbridge".to_string()).chain(flags);
        Ok(<Flags as clap::Parser>::try_parse_from(args)?.partners)
    }
}

/// How often partners are asked for results a person may be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As configured (production).
    Live,
    /// Within seconds: someone is watching the demo.
    Demo,
    /// Not within a test's time: jobs run when a test runs them.
    WhenAsked,
}

fn secs(seconds: u64) -> std::time::Duration {
    std::time::Duration::from_secs(seconds)
}

/// Every partner's validated settings.
#[derive(Debug, Clone)]
pub struct PartnerSettings {
    pub tiep: tiep::TiepSettings,
    pub hcw: hcw::HcwSettings,
    pub haidy: haidy::HaidySettings,
}

impl PartnerSettings {
    /// Validates the partners' configuration; the error names the variable that is wrong.
    pub fn from_args(args: PartnerArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            tiep: tiep::TiepSettings::from_args(args.tiep)?,
            hcw: hcw::HcwSettings::default(),
            haidy: haidy::HaidySettings::from_args(args.haidy)?,
        })
    }

    /// Every partner polling at `pace`, each with its own timings.
    pub fn paced(mut self, pace: Pace) -> Self {
        self.tiep.paced(pace);
        self.hcw.paced(pace);
        self.haidy.paced(pace);
        self
    }
}

/// The one list of partners, each built with its settings and the shared way out.
pub fn registry(settings: &PartnerSettings, upstream: &Upstream) -> Partners {
    Partners::new(vec![
        Arc::new(tiep::Tiep::new(settings.tiep.clone(), upstream.clone())),
        Arc::new(hcw::HcwAtHome::new(settings.hcw.clone(), upstream.clone())),
        Arc::new(haidy::Haidy::new(settings.haidy.clone(), upstream.clone())),
        Arc::new(mediquo::MediQuo),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each partner's module is named by its id; a module left out of the registry fails here.
    /// A partner's module is a folder whose `mod.rs` declares its `ID` (`connection/` is the
    /// flow they share).
    #[test]
    fn every_partner_module_is_in_the_registry() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/partners");
        let declares_id = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join("mod.rs"))
                .is_ok_and(|src| src.contains("pub const ID: PartnerId"))
        };
        let mut modules: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() && declares_id(p))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        modules.sort();
        let settings = PartnerSettings::from_args(PartnerArgs::from_flags([]).unwrap()).unwrap();
        let upstream = Upstream::new(std::time::Duration::from_secs(1)).unwrap();
        let mut registered: Vec<String> = registry(&settings, &upstream)
            .iter()
            .map(|p| p.id().to_string())
            .collect();
        registered.sort();
        assert_eq!(modules, registered);
    }
}
