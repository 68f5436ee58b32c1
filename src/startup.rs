//! The one front door: `Application::build` binds the listener, connects and migrates the
//! database, and wires the router and the job runner. `main`, the demo and the tests all use it.

use std::future::Future;

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::Settings,
    db::Db,
    hint::{HintState, session},
    partners::{self, PartnerSettings},
    server::{Draining, rate_limit::RateLimits, router},
    visits::AppState,
};

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Binds first (port 0 picks a free port), then connects and migrates, and builds every
    /// partner with its settings. Without a configured public URL, a loopback server is
    /// reached at the address it is bound to.
    pub async fn build(settings: Settings, partners: PartnerSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.public_url.is_some() || settings.bind.is_loopback(),
            "CHARTBRIDGE_PUBLIC_URL is required when listening on {} (Hint must reach us there)",
            settings.bind
        );
        let listener = TcpListener::bind((settings.bind, settings.port))
            .await
            .with_context(|| {
                format!(
                    "could not listen on {}:{} (PORT, CHARTBRIDGE_BIND)",
                    settings.bind, settings.port
                )
            })?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{bound}/"))?,
        };
        let db = Db::connect(&settings.database).await?;
        let hint_state = HintState::new(settings, db, public_url)?;
        let registry = partners::registry(&partners, &hint_state.upstream);
        let state = AppState::new(hint_state, registry);
        let sealed = crate::visits::seal_stored(&state)
            .await
            .context("sealing the patient data of older visits")?;
        if sealed > 0 {
            tracing::info!(sealed, "patient data of older visits sealed");
        }
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves and runs jobs until `shutdown` completes; then drains (`/readyz` 503, every
    /// answer closing its connection) for the drain delay, stops accepting, finishes requests
    /// and jobs in flight, hands back the jobs it had to stop, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = RateLimits::new(self.state.settings.rate_limits);
        let draining = Draining::default();
        let router = router(self.state.clone(), limits.clone(), draining.clone());
        let runner = {
            let (state, stop) = (self.state.clone(), stop_rx.clone());
            async move {
                if state.settings.jobs.run_in_background {
                    state.job_runner().run(stop).await;
                }
            }
        };
        let sweeper = session::sweep_periodically(self.state.hint_state.clone(), stop_rx.clone());
        let announcements = {
            let (state, stop) = (self.state.clone(), stop_rx.clone());
            async move {
                if let (crate::db::Backend::Postgres, crate::config::DatabaseSettings::Url(url)) =
                    (state.db.backend(), &state.settings.database)
                {
                    crate::hint::directory::follow_announcements(
                        state.hint_state.clone(),
                        url.clone(),
                        stop,
                    )
                    .await;
                }
            }
        };
        let practice_limits = self.state.practice_limits.clone();
        let forgetter = every_minute(stop_rx.clone(), move || {
            limits.forget_idle();
            practice_limits.forget_idle();
        });
        let purger = crate::retention::purge_periodically(self.state.clone(), stop_rx.clone());
        let publisher = crate::audit::checkpoints::Publisher::new(
            self.state.db.clone(),
            crate::audit::ChainKeys::from_settings(&self.state.settings.keys)
                .current()
                .clone(),
            self.state.settings.audit.checkpoints.clone(),
        );
        let checkpoints =
            publisher.run(self.state.settings.audit.checkpoint_every, stop_rx.clone());
        let mut server_stop = stop_rx.clone();
        let server = crate::server::serve(
            self.listener,
            router,
            self.state.settings.server.clone(),
            draining.clone(),
            async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            },
        );
        let drain_delay = self.state.settings.server.drain_delay;
        let signal = async move {
            shutdown.await;
            // Not ready from now on; still serving, each answer closing its connection, while
            // a load balancer takes this instance out.
            draining.begin();
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "draining: not ready, closing each connection after its answer"
            );
            tokio::time::sleep(drain_delay).await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        };
        tracing::info!(port = self.port, "chartbridge listening");
        tokio::join!(
            server,
            runner,
            sweeper,
            announcements,
            forgetter,
            purger,
            checkpoints,
            signal
        );
        // The heads as the last request and job left them.
        if let Err(e) = publisher.publish(false).await {
            tracing::error!(error = %e, "the audit checkpoints could not be published at shutdown");
        }
        self.state.db.close().await;
        Ok(())
    }
}

/// Runs `work` every minute until `stop` turns true.
async fn every_minute(mut stop: watch::Receiver<bool>, work: impl Fn()) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => work(),
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
