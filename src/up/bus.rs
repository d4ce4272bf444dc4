//! `up --cluster`: a local `nats-server` with JetStream as one more
//! supervised child, and every role pointed at it.
//!
//! A config with a `[cluster]` section keeps it, and the server listens at
//! its first `nats_urls` address; one without gets
//! `nats_urls = ["nats://127.0.0.4:4222"]`. Under `up --hosts` it runs on a
//! host of its own on the core bridge, so partitions cut it off too. The server's streams and the roles' state live in a
//! temporary directory that `up` removes when it stops.

use anyhow::Context;
use config::Config;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the demo's bus listens: NATS's own port, on the demo's loopback
/// range beside the nameservers (moved onto a host of its own by
/// `up --hosts`, like every address of the topology).
pub const DEMO_NATS: &str = "127.0.0.4:4222";

/// Its host under `up --hosts`.
pub const HOST: &str = "bus";

/// The bus `up` runs: its address, its program's arguments, and the config
/// the roles get.
pub struct LocalBus {
    /// Where the server listens.
    pub listen: SocketAddr,
    /// `nats-server`'s arguments.
    pub args: Vec<OsString>,
    /// The config with `[cluster]`, written for the roles.
    pub config: Config,
    /// Its path.
    pub config_path: PathBuf,
    /// Everything it stores; removed on drop.
    dir: tempfile::TempDir,
}

/// The program, found on the PATH.
pub const PROGRAM: &str = "nats-server";

impl LocalBus {
    /// Prepares the bus for `config` (read from `config_path`, or the
    /// embedded demo).
    pub fn prepare(
        config: &Config,
        config_path: Option<&std::path::Path>,
    ) -> anyhow::Result<LocalBus> {
        let found = std::process::Command::new(PROGRAM)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        anyhow::ensure!(
            found,
            "`up --cluster` runs `{PROGRAM}`, which is not on the PATH; install it \
             (Debian and Ubuntu: `apt-get install nats-server`)"
        );
        let dir = tempfile::Builder::new()
            .prefix("meridian-bus-")
            .tempdir()
            .context("cannot make a directory for the bus")?;
        let text = match config_path {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            None => config::DEMO_TOML.to_owned(),
        };
        let (text, listen) = match &config.cluster {
            Some(cluster) => (text, listen_address(cluster.first_server())?),
            None => {
                let state = dir.path().join("state");
                let section = format!(
                    "\n[cluster]\nnats_urls = [\"nats://{DEMO_NATS}\"]\nstate_dir = {:?}\n",
                    state.display().to_string()
                );
                (
                    text + &section,
                    DEMO_NATS.parse().expect("a socket address"),
                )
            }
        };
        let config_path = dir.path().join("meridian.toml");
        std::fs::write(&config_path, &text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let config = Config::load(&config_path)?;
        let args = server_args(listen, dir.path());
        Ok(LocalBus {
            listen,
            args,
            config,
            config_path,
            dir,
        })
    }
}

impl LocalBus {
    /// The bus moved with the topology it serves (`up --hosts`): it
    /// listens where `config`'s first `nats_urls` now says.
    pub fn moved_with(
        &mut self,
        config: &Config,
        config_path: &std::path::Path,
    ) -> anyhow::Result<()> {
        let first = config.cluster.as_ref().map_or("", |c| c.first_server());
        self.listen = listen_address(first)?;
        self.args = server_args(self.listen, self.dir.path());
        self.config = config.clone();
        self.config_path = config_path.to_path_buf();
        Ok(())
    }
}

/// `nats-server`'s arguments: JetStream on, listening on `listen`, storing
/// under `dir`.
fn server_args(listen: SocketAddr, dir: &std::path::Path) -> Vec<OsString> {
    [
        "--jetstream",
        "--addr",
        &listen.ip().to_string(),
        "--port",
        &listen.port().to_string(),
        "--store_dir",
        &dir.join("nats").display().to_string(),
        "--server_name",
        "meridian-up",
    ]
    .map(OsString::from)
    .to_vec()
}

/// The address a `nats://host:port` URL names, for a local server.
pub fn listen_address(url: &str) -> anyhow::Result<SocketAddr> {
    config::cluster::nats_authority(url)
        .parse()
        .with_context(|| {
            format!(
                "`up --cluster` runs the bus at cluster.nats_urls[0] = {url:?}, which must be an \
             IP address and port of this machine"
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bus_listens_where_the_first_url_says() {
        assert_eq!(
            super::listen_address("nats://127.9.0.4:4222").unwrap(),
            "127.9.0.4:4222".parse().unwrap()
        );
        assert_eq!(
            super::listen_address(&format!("nats://u:p@{}", super::DEMO_NATS)).unwrap(),
            super::DEMO_NATS.parse().unwrap()
        );
        assert!(super::listen_address("nats://nats.example:4222").is_err());
    }
}
