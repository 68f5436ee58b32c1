//! A test app's life after `spawn_app`: the CLI run beside it, crashes and restarts, more
//! instances on its database, a graceful stop.

use std::time::Duration;

use chartbridge::{Application, config::DatabaseSettings, visits::AppState};

use super::{Config, TestApp, TestDatabase, spawn::start};

/// An instance started by [`TestApp::spawn_instance`].
pub struct Instance {
    pub address: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    /// Ends it at once, mid-flight, as `kill -9` would: no shutdown, leases left to run out.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApp {
    /// Runs the `chartbridge` binary with `args` on this app's database (as an operator would
    /// beside it); answers its exit status and what it printed (stdout, then stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String) {
        self.cli_with(args, &[]).await
    }

    /// Like [`TestApp::cli`], with more of the environment set (`env`). The binary runs beside
    /// the app (which keeps serving meanwhile: the command may call it).
    pub async fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        use secrecy::ExposeSecret;
        let url = match &self.database.settings {
            DatabaseSettings::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseSettings::Url(url) => url.expose_secret().to_string(),
        };
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(self.config.keys.secret.0);
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chartbridge"))
            .args(args)
            .env("DATABASE_URL", url)
            // The app's own key (the trail is chained under it); `env` may name others.
            .env("CHARTBRIDGE_SECRET_KEY", key)
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("the chartbridge binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }

    /// Kills the app mid-flight (server and workers, no graceful shutdown) and starts a new one
    /// on the same database and port, as a crash and restart would.
    pub async fn crash_and_restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like `crash_and_restart`, with the settings adjusted first (an operator's change).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        self.server.abort();
        let _ = self.server.await;
        // The same address again: the listener died with the server task.
        let port: u16 = self.address.rsplit(':').next().unwrap().parse().unwrap();
        self.config.port = port;
        self.config.public_url = Some(url::Url::parse(&self.address).unwrap());
        adjust(&mut self.config);
        tokio::time::sleep(Duration::from_millis(100)).await;
        start(
            self.config,
            self.hint,
            self.partners,
            self.database,
            self.dns,
        )
        .await
    }

    /// Stops this instance (as a crash would) and starts one on `database` instead (a
    /// restored backup), with the same settings, keys and sandboxes.
    pub async fn restart_on(mut self, database: TestDatabase) -> TestApp {
        self.database = database;
        let settings = self.database.settings.clone();
        self.restart_with(move |config| config.app.database = settings)
            .await
    }

    /// A second instance on the same database (as several instances share PostgreSQL);
    /// answers its base URL. It stops when the test ends.
    pub async fn another_instance(&self) -> String {
        let mut config = self.config.clone();
        // Its own port; the public URL all instances share (as behind a load balancer).
        config.port = 0;
        config.public_url = Some(url::Url::parse(&self.address).unwrap());
        let app = Application::build(config.app, config.partners)
            .await
            .expect("second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        address
    }

    /// Another instance on the same database, with its own job runner (as Hint's hosting runs
    /// several behind one address); `adjust` its settings first. Killed with [`Instance::kill`]
    /// or when the test ends.
    pub async fn spawn_instance(&self, adjust: impl FnOnce(&mut Config)) -> Instance {
        let mut config = self.config.clone();
        config.port = 0;
        config.public_url = Some(url::Url::parse(&self.address).unwrap());
        adjust(&mut config);
        let app = Application::build(config.app, config.partners)
            .await
            .expect("the instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let task = tokio::spawn(app.run_until_stopped(std::future::pending()));
        Instance { address, task }
    }

    /// Asks the app to shut down gracefully and waits until it has.
    pub async fn stop_gracefully(mut self) -> AppState {
        self.tell_to_stop();
        self.stopped().await;
        self.state
    }

    /// Tells the app to stop, as SIGTERM does, without waiting: it drains, then stops.
    pub fn tell_to_stop(&mut self) {
        let _ = self.stop_signal().send(());
    }

    /// What [`TestApp::tell_to_stop`] sends, for a test that stops the app while its
    /// requests are under way.
    pub fn stop_signal(&mut self) -> tokio::sync::oneshot::Sender<()> {
        self.stop.take().expect("running")
    }

    /// Waits until the app told to stop has stopped (its pool closed; the sandboxes still run).
    pub async fn stopped(&mut self) {
        (&mut self.server)
            .await
            .expect("server task")
            .expect("clean shutdown");
    }

    /// Another app on this app's database, built but not serving: its state (its queue run by
    /// the test, `state.job_runner()`).
    pub async fn another_state(&self) -> AppState {
        let mut config = self.config.clone();
        config.port = 0;
        config.public_url = Some(url::Url::parse(&self.address).unwrap());
        Application::build(config.app, config.partners)
            .await
            .expect("the other app builds")
            .state()
    }
}
