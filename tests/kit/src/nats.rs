//! A real `nats-server` with JetStream (Debian package `nats-server`), for
//! the tests of the cluster bus: no mock of NATS anywhere.

use crate::{KitError, Process};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A `nats-server -js` on one address, its streams stored in a directory
/// that outlives a restart.
pub struct NatsServer {
    addr: SocketAddr,
    store: PathBuf,
    /// A configuration file it runs with, if any.
    config: Option<PathBuf>,
    process: Option<Process>,
}

impl NatsServer {
    /// Whether `nats-server` is on the PATH (tests skip with a message
    /// naming the package when it is not).
    pub fn installed() -> bool {
        Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// Starts one on `addr`, storing JetStream data in `store`, and waits
    /// until it accepts connections.
    pub fn start(addr: SocketAddr, store: &Path) -> Result<NatsServer, KitError> {
        let mut server = NatsServer {
            addr,
            store: store.to_path_buf(),
            config: None,
            process: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// [`NatsServer::start`] with `settings` (nats-server configuration
    /// text: authorization, say) in a configuration file in `store`.
    pub fn start_configured(
        addr: SocketAddr,
        store: &Path,
        settings: &str,
    ) -> Result<NatsServer, KitError> {
        let config = store.join("nats-server.conf");
        std::fs::write(&config, settings)
            .map_err(KitError::io(format!("write {}", config.display())))?;
        let mut server = NatsServer {
            addr,
            store: store.to_path_buf(),
            config: Some(config),
            process: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `nats://ADDR`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it (the bus is down until [`NatsServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again on the same address and store (what was stored is
    /// still there).
    pub fn restart(&mut self) -> Result<(), KitError> {
        self.stop();
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--jetstream")
            .arg("--addr")
            .arg(self.addr.ip().to_string())
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--store_dir")
            .arg(&self.store);
        let mut process = Process::spawn(command, format!("nats-server on {}", self.addr))?;
        process.wait_accepting(self.addr, Duration::from_secs(10))?;
        // JetStream is ready a moment after the client port.
        process.wait_for_line("JetStream ready", Duration::from_secs(10), |line| {
            line.contains("Server is ready")
        })?;
        self.process = Some(process);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
