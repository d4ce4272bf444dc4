//! The command line: every subcommand, flag and argument type, with its
//! `--help` text.
//!
//! A leaf: it uses nothing else of the binary, so every command module
//! (`roles`, `route`, `ops`, `up`) can take its arguments from here without
//! a cycle between them.

use clap::{Args, Parser, Subcommand};
use config::Config;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A self-hostable, multi-region edge CDN with GeoDNS steering.
///
/// With no command, runs `meridian up`: the whole demo topology on this
/// machine (GeoDNS, and an edge and an origin per region).
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about, long_about)]
pub struct Cli {
    /// What to run (default: `up`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The configuration file every role reads.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArg {
    /// The topology config (TOML). Without it, the embedded demo topology
    /// is used (`meridian config default` prints it).
    #[arg(long, short, env = "MERIDIAN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads and validates the config `--config` names, or the embedded
    /// demo without one.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load_or_demo(self.config.as_deref())?)
    }
}

/// Meridian's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole topology on this machine: the GeoDNS servers, and the
    /// edges and the origin of every region, each a supervised child
    /// process. Prints the endpoints; Ctrl-C stops everything.
    Up(UpArgs),
    /// Run one authoritative GeoDNS server of the config (UDP and TCP):
    /// the only one, or the one --server names.
    Geodns(GeodnsArgs),
    /// Run one of a region's caching edges (the one at --address, which a
    /// region of several edges needs); or, with --listen and --origin, one
    /// edge in front of any HTTP origin without a config file.
    Edge(EdgeArgs),
    /// Run one region's origin server (the demo site and /api/whoami).
    Origin(RegionArgs),
    /// Simulate a regional outage in the running `meridian up`: kill the
    /// region's processes with SIGKILL, as a crash would.
    Outage(OutageArgs),
    /// Start a region's killed processes again in the running `meridian up`.
    Restore(RestoreArgs),
    /// Show the running topology: every process, and GeoDNS's view of
    /// every region's edges.
    Status(StatusArgs),
    /// Purge cached objects on every edge of the topology: by URL, by tag
    /// (`Surrogate-Key` / `Cache-Tag`), or everything.
    Purge(PurgeArgs),
    /// Validate or publish a config, or print the embedded default.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Explain where GeoDNS sends a client: its country, coordinates, the
    /// rule that decided, the regions in order with distance and health,
    /// and the ECS scope of the reply (like gdnsd_geoip_test).
    Route(RouteArgs),
}

/// `meridian purge`
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Absolute URLs to purge, e.g. http://cdn.meridian.test:8080/assets/1k.bin
    #[arg(value_name = "URL", required_unless_present_any = ["tag", "all"])]
    pub urls: Vec<String>,
    /// Purge every object carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tag: Vec<String>,
    /// Purge everything.
    #[arg(long)]
    pub all: bool,
    /// Mark stale instead of removing: the next request revalidates.
    #[arg(long)]
    pub soft: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `meridian outage`
#[derive(Debug, Args)]
pub struct OutageArgs {
    /// The region to take down.
    pub region: String,
    /// Which of its processes: the edge, the origin, or both.
    #[arg(long, value_enum, default_value_t = OutageScope::All, conflicts_with = "partition")]
    pub component: OutageScope,
    /// Cut the region's network link instead of killing its processes
    /// (`meridian up --hosts` only): it keeps serving, but no one outside
    /// reaches it. `restore` heals the link.
    #[arg(long)]
    pub partition: bool,
    /// With --partition: cut only the link between this GeoDNS server
    /// (e.g. ns1) and the region.
    #[arg(long, requires = "partition", value_name = "SERVER")]
    pub from: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Which of a region's processes an outage takes down (also the control
/// API's `component` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutageScope {
    /// Edge and origin: the whole region.
    #[default]
    All,
    /// Only the edge: clients must be steered elsewhere.
    Edge,
    /// Only the origin: the edge must fail over to another region's origin.
    Origin,
}

/// `meridian up`
#[derive(Debug, Default, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Each GeoDNS server, each edge and each origin on a host of its own:
    /// a network namespace with its own addresses (Linux, as root), so
    /// `meridian outage --partition` can cut links. The topology's
    /// loopback addresses move into --hosts-subnet (127.0.2.1 → 198.18.2.1).
    #[arg(long)]
    pub hosts: bool,
    /// Run a local NATS server with JetStream (`nats-server`) as one more
    /// child and every role on it: purges on the bus's stream, config
    /// revisions in its bucket (see `[cluster]`).
    #[arg(long)]
    pub cluster: bool,
    /// The /16 the hosts' addresses are in (198.18.0.0/15 is set aside
    /// for tests of networks, RFC 2544).
    #[arg(long, requires = "hosts", value_name = "A.B.0.0/16", default_value = "198.18.0.0/16", value_parser = parse_subnet)]
    pub hosts_subnet: [u8; 2],
}

/// `A.B.0.0/16` as its first two octets.
fn parse_subnet(text: &str) -> Result<[u8; 2], String> {
    let network: ipnet::Ipv4Net = text
        .parse()
        .map_err(|e| format!("{text:?} is not an IPv4 network: {e}"))?;
    let [a, b, c, d] = network.addr().octets();
    if network.prefix_len() != 16 || c != 0 || d != 0 {
        return Err(format!("{text:?} is not a /16 (like 198.18.0.0/16)"));
    }
    if a == 127 {
        return Err("the hosts need addresses off loopback".to_owned());
    }
    Ok([a, b])
}

/// `meridian restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The region to bring back.
    pub region: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `meridian status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the raw JSON status instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `meridian edge`
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The region whose edge to run, from the config.
    #[arg(
        long,
        short,
        required_unless_present = "listen",
        conflicts_with = "listen"
    )]
    pub region: Option<String>,
    /// Which of the region's edges this is: one of its `edge_addresses`
    /// (not needed when it has only one).
    #[arg(long, short, requires = "region", value_name = "IP")]
    pub address: Option<IpAddr>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Ad-hoc mode: listen here (e.g. 127.0.0.1:8090), with no config file
    /// and any Host accepted.
    #[arg(long, requires = "origin", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Ad-hoc mode: the origin to forward to (e.g. http://127.0.0.1:8000).
    #[arg(long, requires = "listen", value_name = "URL")]
    pub origin: Option<String>,
    /// Ad-hoc mode: the memory cache's budget, in bytes or with a unit
    /// (`64MiB`) [default: 256 MiB].
    #[arg(long, alias = "cache-max-bytes", requires = "listen", value_name = "SIZE", value_parser = byte_size)]
    pub cache_bytes: Option<u64>,
    /// Ad-hoc mode: keep a disk tier of the cache in this directory (below
    /// memory; it survives restarts). Needs --cache-disk-bytes.
    #[arg(long, requires_all = ["listen", "cache_disk_bytes"], value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Ad-hoc mode: the disk tier's budget (`1GiB`).
    #[arg(long, requires = "cache_dir", value_name = "SIZE", value_parser = byte_size)]
    pub cache_disk_bytes: Option<u64>,
    /// Ad-hoc mode: also forward this request field to the origin on GET
    /// and HEAD (repeatable; like `edge.forward_request_headers`).
    #[arg(long = "forward-header", requires = "listen", value_name = "NAME")]
    pub forward_headers: Vec<String>,
}

/// A byte size: plain bytes, or with a unit (`4MiB`, `1GB`).
fn byte_size(value: &str) -> Result<u64, String> {
    parse_size::parse_size(value).map_err(|e| format!("{value:?} is not a size: {e}"))
}

/// `meridian geodns`
#[derive(Debug, Args)]
pub struct GeodnsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which of the config's `[[geodns.servers]]` to run, by name (`ns1`);
    /// needed when the config has several.
    #[arg(long, value_name = "NAME", conflicts_with = "listen")]
    pub server: Option<String>,
    /// Which of the config's GeoDNS servers to run, by its listen address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

impl GeodnsArgs {
    /// The server these flags choose.
    pub fn choice(&self) -> config::ServerChoice {
        match (&self.server, self.listen) {
            (Some(name), _) => config::ServerChoice::Named(name.clone()),
            (None, Some(addr)) => config::ServerChoice::Listening(addr),
            (None, None) => config::ServerChoice::Only,
        }
    }
}

/// `meridian route`
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The client's address, or an ECS subnet such as 81.2.69.0/24.
    #[arg(value_name = "IP")]
    pub client: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// A command about one region.
#[derive(Debug, Args)]
pub struct RegionArgs {
    /// The region, from the config.
    #[arg(long, short)]
    pub region: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `meridian config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate config files; prints each problem with its file, key and
    /// reason, and exits non-zero if any file is invalid.
    Check {
        /// The files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Publish a config to every role of a cluster: validates FILE as
    /// `check` does, then stores it as the next revision on the cluster
    /// bus that its `[cluster]` names. Every role validates it again
    /// before it applies it.
    Publish {
        /// The config to publish.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the embedded demo topology, a starting point for your own.
    Default,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Whether `meridian` with `args` (space-separated) parses.
    fn parses(args: &str) -> bool {
        Cli::try_parse_from(std::iter::once("meridian").chain(args.split(' '))).is_ok()
    }

    #[test]
    fn edge_needs_a_region_or_ad_hoc_flags() {
        assert!(!parses("edge"));
        assert!(parses("edge --region eu-west"));
        assert!(parses("edge --region eu-west --address 127.0.2.3"));
        assert!(
            !parses("edge --address 127.0.2.3"),
            "an address names an edge of a region"
        );
        assert!(
            !parses("edge -r eu-west -a eu"),
            "an address is an IP address"
        );
        assert!(!parses("edge --listen 127.0.0.1:8090"));
        assert!(
            !parses("edge -r eu-west --cache-max-bytes 1"),
            "the cache budget of a configured edge comes from its config"
        );
        assert!(parses(
            "edge --listen 127.0.0.1:8090 --origin http://127.0.0.1:8000"
        ));
        assert!(!parses(
            "edge --region eu-west --listen 127.0.0.1:8090 --origin x"
        ));
    }

    #[test]
    fn outage_takes_a_region_and_a_component() {
        let cli = Cli::try_parse_from(["meridian", "outage", "eu-west", "--component", "origin"])
            .unwrap();
        match cli.command {
            Some(Command::Outage(args)) => {
                assert_eq!(args.region, "eu-west");
                assert_eq!(args.component, OutageScope::Origin);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["meridian", "outage", "eu-west"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Outage(a)) if a.component == OutageScope::All));
        assert!(
            Cli::try_parse_from(["meridian", "outage", "eu-west", "--component", "dns"]).is_err()
        );
    }

    #[test]
    fn purge_needs_something_to_purge() {
        assert!(Cli::try_parse_from(["meridian", "purge"]).is_err());
        assert!(Cli::try_parse_from(["meridian", "purge", "http://cdn.meridian.test/x"]).is_ok());
        assert!(Cli::try_parse_from(["meridian", "purge", "--tag", "t"]).is_ok());
        assert!(Cli::try_parse_from(["meridian", "purge", "--all", "--soft"]).is_ok());
    }

    #[test]
    fn geodns_chooses_its_server_by_name_or_address() {
        let choice = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Some(Command::Geodns(args))) => Ok(args.choice()),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(
            choice(&["meridian", "geodns"]),
            Ok(config::ServerChoice::Only)
        );
        assert_eq!(
            choice(&["meridian", "geodns", "--server", "ns2"]),
            Ok(config::ServerChoice::Named("ns2".into()))
        );
        assert_eq!(
            choice(&["meridian", "geodns", "--listen", "127.0.0.2:5353"]),
            Ok(config::ServerChoice::Listening(
                "127.0.0.2:5353".parse().unwrap()
            ))
        );
        assert!(
            choice(&[
                "meridian",
                "geodns",
                "--server",
                "ns1",
                "--listen",
                "127.0.0.1:5353"
            ])
            .is_err()
        );
    }

    #[test]
    fn config_publish_takes_one_file() {
        assert!(parses("config publish meridian.toml"));
        assert!(!parses("config publish"));
        assert!(!parses("config publish a.toml b.toml"));
    }

    #[test]
    fn no_command_means_up() {
        assert!(Cli::try_parse_from(["meridian"]).unwrap().command.is_none());
    }
}
