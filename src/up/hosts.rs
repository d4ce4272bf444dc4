//! `meridian up --hosts`: every GeoDNS server, edge and origin on a host of
//! its own — a Linux network namespace with its own addresses — instead of
//! loopback aliases, so that links can fail as they do between machines.
//!
//! The network it makes:
//!
//! - a core bridge in this (the root) namespace: `up`, its probes and the
//!   user's `dig` and `curl` reach every host through it;
//! - per region, a bridge of its own joined to the core by one link, the
//!   region's uplink;
//! - per host, a namespace whose one interface (`eth0`, the far end of a
//!   veth pair) is on its bridge: GeoDNS servers on the core, a region's
//!   edges and origin on their region's bridge.
//!
//! So a partitioned region is its uplink going down (its edges still reach
//! each other and their origin; nobody outside reaches them), and a
//! nameserver cut off from one region is a blackhole route, in the
//! nameserver's namespace, to each of the region's addresses.
//!
//! Everything is made with iproute2's `ip`, the standard tool for it, not
//! with netlink messages written by hand. What one `up` makes is recorded
//! (in [`RECORDS`]) before it is made and removed when it stops; a record
//! whose `up` is gone (it crashed, or was killed) is cleaned up at the next
//! start. Nothing else is ever touched: only names from a record are
//! deleted.

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where each `up --hosts` records what it made, one file per process id.
pub const RECORDS: &str = "/run/meridian/hosts";

/// `up --hosts`: the network, and the config moved onto it, in a file the
/// children read. Dropped, it removes both.
pub struct OnHosts {
    /// The network of namespaces.
    pub network: Network,
    /// The moved config's file.
    pub config_path: PathBuf,
}

impl OnHosts {
    /// Moves the config at `original` (the embedded demo when `None`)
    /// onto `subnet` and makes its network. The moved file is written
    /// beside the original, so that paths in it (a geo database,
    /// certificates) mean what they meant, or to the system's temporary
    /// directory for the demo.
    pub fn prepare(
        original: Option<&Path>,
        subnet: [u8; 2],
        bus: bool,
    ) -> anyhow::Result<(OnHosts, config::Config)> {
        let (text, dir) = match original {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None => (config::DEMO_TOML.to_owned(), std::env::temp_dir()),
        };
        let moved = super::relocate::for_hosts(&text, subnet)?;
        let config_path = dir.join(format!(".meridian-hosts-{}.toml", std::process::id()));
        std::fs::write(&config_path, moved)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let prepared = config::Config::load(&config_path)
            .map_err(anyhow::Error::from)
            .and_then(|config| Ok((NetworkSpec::of(&config, subnet, bus)?, config)))
            .and_then(|(spec, config)| Ok((Network::create(spec)?, config)));
        match prepared {
            Ok((network, config)) => Ok((
                OnHosts {
                    network,
                    config_path,
                },
                config,
            )),
            Err(error) => {
                let _ = std::fs::remove_file(&config_path);
                Err(error)
            }
        }
    }
}

impl Drop for OnHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// One host to make: a namespace, and the addresses it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Short and unique: `ns1`, `eu-west-edge-1`, `eu-west-origin`.
    pub name: String,
    /// The region whose bridge it is on; `None`: the core bridge.
    pub region: Option<usize>,
    /// Its addresses, all inside the network's subnet.
    pub addresses: Vec<Ipv4Addr>,
}

/// The whole network to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The /16 every host's addresses are in, by its first two octets.
    pub subnet: [u8; 2],
    /// The regions' names, by index.
    pub regions: Vec<String>,
    /// The hosts.
    pub hosts: Vec<HostSpec>,
}

impl NetworkSpec {
    /// The address this (the root) namespace has on the core bridge: the
    /// subnet's last usable one, which relocated loopback addresses (see
    /// [`super::relocate`]) never are.
    pub fn root_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], 255, 254)
    }
}

impl NetworkSpec {
    /// The hosts of `config` (already moved into `subnet`): each GeoDNS
    /// server on the core, each edge and each origin on its region's
    /// bridge, and with `bus` (`up --cluster`) the NATS server on the core
    /// at its first `nats_urls` address. Every address must be an IPv4
    /// address in `subnet`.
    pub fn of(config: &config::Config, subnet: [u8; 2], bus: bool) -> anyhow::Result<NetworkSpec> {
        let mut hosts = Vec::new();
        if bus && let Some(cluster) = &config.cluster {
            let listen = super::bus::listen_address(cluster.first_server())?;
            hosts.push(host(super::bus::HOST, None, &[listen.ip()], subnet)?);
        }
        for server in &config.geodns.servers {
            let mut addresses = vec![server.listen.ip(), server.admin_listen.ip()];
            addresses.extend(server.probe_from);
            hosts.push(host(&server.name, None, &addresses, subnet)?);
        }
        for (index, region) in config.regions.iter().enumerate() {
            for (nth, address) in region.edge_addresses.iter().enumerate() {
                let name = edge_host(&region.name, nth);
                hosts.push(host(&name, Some(index), &[*address], subnet)?);
            }
            let name = origin_host(&region.name);
            hosts.push(host(
                &name,
                Some(index),
                &[region.origin_listen.ip()],
                subnet,
            )?);
        }
        Ok(NetworkSpec {
            subnet,
            regions: config.regions.iter().map(|r| r.name.clone()).collect(),
            hosts,
        })
    }
}

/// The host of a region's `nth` (0-based) edge.
pub fn edge_host(region: &str, nth: usize) -> String {
    format!("{region}-edge-{}", nth + 1)
}

/// The host of a region's origin.
pub fn origin_host(region: &str) -> String {
    format!("{region}-origin")
}

/// Host `name`, holding `addresses` (each once), which must be in `subnet`.
fn host(
    name: &str,
    region: Option<usize>,
    addresses: &[std::net::IpAddr],
    subnet: [u8; 2],
) -> anyhow::Result<HostSpec> {
    let mut held: Vec<Ipv4Addr> = Vec::new();
    for address in addresses {
        let v4 = match address {
            std::net::IpAddr::V4(v4) if v4.octets()[..2] == subnet => *v4,
            other => bail!(
                "{name} has {other}, which is not in {}.{}.0.0/16: `up --hosts` runs a topology on loopback addresses",
                subnet[0],
                subnet[1]
            ),
        };
        if !held.contains(&v4) {
            held.push(v4);
        }
    }
    Ok(HostSpec {
        name: name.to_owned(),
        region,
        addresses: held,
    })
}

/// What one `up` made, by name: exactly what is deleted when it stops, or
/// at a later start if it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Namespaces (`ip netns`); deleting one deletes its interfaces.
    namespaces: Vec<String>,
    /// Links in the root namespace: bridges and the near ends of veth
    /// pairs (deleting one end deletes the pair).
    links: Vec<String>,
}

/// The network of one `up --hosts`, made; removed when dropped.
pub struct Network {
    spec: NetworkSpec,
    /// `m<pid>`: the prefix of every name it made.
    tag: String,
    record_path: PathBuf,
    record: Record,
}

impl Network {
    /// Cleans up after earlier `up --hosts` that are gone, then makes the
    /// network `spec` describes. On failure, what was made is removed.
    pub fn create(spec: NetworkSpec) -> anyhow::Result<Network> {
        Network::create_in(spec, Path::new(RECORDS))
    }

    /// [`Network::create`], with its records in `records`.
    fn create_in(spec: NetworkSpec, records: &Path) -> anyhow::Result<Network> {
        check_ip_works()?;
        clean_leftovers(records)?;
        std::fs::create_dir_all(records).with_context(|| {
            format!(
                "cannot create {} for the record of the network",
                records.display()
            )
        })?;
        let pid = std::process::id();
        let mut network = Network {
            spec,
            tag: format!("m{pid}"),
            record_path: records.join(format!("{pid}.json")),
            record: Record::default(),
        };
        network.build()?;
        Ok(network)
    }

    /// What runs `exe args` inside host `host`'s namespace.
    pub fn command_in(
        &self,
        host: &str,
        exe: &Path,
        args: &[OsString],
    ) -> (PathBuf, Vec<OsString>) {
        let mut all: Vec<OsString> =
            vec!["netns".into(), "exec".into(), self.namespace(host).into()];
        all.push(exe.into());
        all.extend(args.iter().cloned());
        (PathBuf::from("ip"), all)
    }

    /// Cuts region `region` off from everyone else (its uplink down), or
    /// heals it.
    pub fn set_partitioned(&self, region: usize, partitioned: bool) -> anyhow::Result<()> {
        let state = if partitioned { "down" } else { "up" };
        ip(&["link", "set", &self.uplink(region), state])
    }

    /// Cuts host `host` off from region `region` only (blackhole routes to
    /// the region's addresses in its namespace), or heals that cut.
    pub fn set_cut(&self, host: &str, region: usize, cut: bool) -> anyhow::Result<()> {
        let namespace = self.namespace(host);
        for address in self.region_addresses(region) {
            let route = format!("{address}/32");
            if cut {
                ip(&["-n", &namespace, "route", "replace", "blackhole", &route])?;
            } else {
                // Already gone is healed.
                let _ = ip(&["-n", &namespace, "route", "del", "blackhole", &route]);
            }
        }
        Ok(())
    }

    fn region_addresses(&self, region: usize) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.spec
            .hosts
            .iter()
            .filter(move |host| host.region == Some(region))
            .flat_map(|host| host.addresses.iter().copied())
    }

    fn namespace(&self, host: &str) -> String {
        format!("meridian-{}-{host}", std::process::id())
    }

    fn core_bridge(&self) -> String {
        format!("{}c", self.tag)
    }

    fn region_bridge(&self, region: usize) -> String {
        format!("{}r{region}", self.tag)
    }

    /// The uplink's end on the region's bridge; its peer is on the core.
    fn uplink(&self, region: usize) -> String {
        format!("{}u{region}", self.tag)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        if let Err(error) = self.try_build() {
            self.remove();
            return Err(error);
        }
        Ok(())
    }

    fn try_build(&mut self) -> anyhow::Result<()> {
        let subnet = format!("{}.{}.0.0/16", self.spec.subnet[0], self.spec.subnet[1]);
        // Linux lets two interfaces hold the same address; two networks on
        // one subnet would route each other's packets.
        let in_use = ip_output(&["-o", "addr", "show", "to", &subnet])?;
        if !in_use.trim().is_empty() {
            bail!(
                "{subnet} is already in use on this machine (another `meridian up --hosts`?): {}",
                in_use.trim()
            );
        }
        let core = self.core_bridge();
        self.make_link(&core, &["type", "bridge"])?;
        let root = format!("{}/16", self.spec.root_address());
        ip(&["addr", "add", &root, "dev", &core])?;
        ip(&["link", "set", &core, "up"])?;
        for region in 0..self.spec.regions.len() {
            let bridge = self.region_bridge(region);
            self.make_link(&bridge, &["type", "bridge"])?;
            ip(&["link", "set", &bridge, "up"])?;
            let uplink = self.uplink(region);
            let core_end = format!("{}U{region}", self.tag);
            self.make_link(&uplink, &["type", "veth", "peer", "name", &core_end])?;
            ip(&["link", "set", &uplink, "master", &bridge, "up"])?;
            ip(&["link", "set", &core_end, "master", &core, "up"])?;
        }
        for (index, host) in self.spec.hosts.clone().iter().enumerate() {
            let namespace = self.namespace(&host.name);
            self.record.namespaces.push(namespace.clone());
            self.save()?;
            ip(&["netns", "add", &namespace])?;
            let near = format!("{}h{index}", self.tag);
            let far = format!("{}p{index}", self.tag);
            self.make_link(&near, &["type", "veth", "peer", "name", &far])?;
            ip(&["link", "set", &far, "netns", &namespace])?;
            ip(&["-n", &namespace, "link", "set", &far, "name", "eth0"])?;
            for address in &host.addresses {
                ip(&[
                    "-n",
                    &namespace,
                    "addr",
                    "add",
                    &format!("{address}/16"),
                    "dev",
                    "eth0",
                ])?;
            }
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
            let bridge = match host.region {
                Some(region) => self.region_bridge(region),
                None => core.clone(),
            };
            ip(&["link", "set", &near, "master", &bridge, "up"])?;
        }
        Ok(())
    }

    /// Records `name`, then makes it with `ip link add name ARGS`.
    fn make_link(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        self.record.links.push(name.to_owned());
        self.save()?;
        let mut all = vec!["link", "add", name];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn save(&self) -> anyhow::Result<()> {
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_vec(&self.record).unwrap_or_default();
        std::fs::write(&self.record_path, json)
            .with_context(|| format!("cannot write {}", self.record_path.display()))
    }

    /// Deletes everything it made, then its record.
    fn remove(&mut self) {
        remove(&self.record);
        let _ = std::fs::remove_file(&self.record_path);
        self.record = Record::default();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Deletes what `record` names; what is already gone is fine.
fn remove(record: &Record) {
    for namespace in &record.namespaces {
        let _ = ip(&["netns", "delete", namespace]);
    }
    for link in &record.links {
        let _ = ip(&["link", "delete", link]);
    }
}

/// Removes what earlier `up --hosts` recorded in `records` and could not
/// remove themselves (their process is gone); returns how many.
pub fn clean_leftovers(records: &Path) -> anyhow::Result<usize> {
    let entries = match std::fs::read_dir(records) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", records.display())),
    };
    let mut cleaned = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let record: Record = match std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            Some(record) => record,
            None => {
                tracing::warn!(record = %path.display(), "unreadable record of an earlier `up --hosts`; left alone");
                continue;
            }
        };
        tracing::info!(
            pid,
            "removing the network of an earlier `meridian up --hosts` that is gone"
        );
        remove(&record);
        let _ = std::fs::remove_file(&path);
        cleaned += 1;
    }
    Ok(cleaned)
}

/// Fails with what to do when this machine cannot make namespaces.
fn check_ip_works() -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("`meridian up --hosts` needs Linux network namespaces; run `meridian up` instead");
    }
    ip(&["netns", "list"]).map_err(|error| {
        anyhow!("`meridian up --hosts` needs iproute2's `ip` and root (CAP_NET_ADMIN and CAP_SYS_ADMIN): {error:#}")
    })
}

/// Runs `ip ARGS`; its stderr is the error.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    ip_output(args).map(drop)
}

/// Runs `ip ARGS` and returns what it printed; its stderr is the error.
fn ip_output(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(anyhow!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::Duration;

    /// Whether this machine lets the test make namespaces (root on Linux,
    /// with `ip`); the tests that need them say so and pass otherwise.
    fn namespaces_available() -> bool {
        nix::unistd::geteuid().is_root() && ip(&["netns", "list"]).is_ok()
    }

    /// Runs `work` on a thread inside `namespace`'s network.
    fn inside<T: Send + 'static>(namespace: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(format!("/run/netns/{namespace}")).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            work()
        })
        .join()
        .unwrap()
    }

    /// Whether a connection from `namespace` (this one: `None`) to `to`
    /// succeeds within a few seconds: a healed link takes a moment (its
    /// bridge port and the neighbour entries come back), and a cut one
    /// never answers.
    fn reaches(namespace: Option<&str>, to: SocketAddr) -> bool {
        let connect = move || {
            (0..6).any(|_| TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok())
        };
        match namespace {
            Some(namespace) => inside(namespace, connect),
            None => connect(),
        }
    }

    #[test]
    fn partitions_cut_links_and_everything_is_removed() {
        if !namespaces_available() {
            eprintln!("skipped: making network namespaces needs root and iproute2");
            return;
        }
        let spec = NetworkSpec {
            subnet: [198, 19],
            regions: vec!["us-east".into(), "eu-west".into()],
            hosts: vec![
                HostSpec {
                    name: "ns1".into(),
                    region: None,
                    addresses: vec![Ipv4Addr::new(198, 19, 0, 1)],
                },
                HostSpec {
                    name: "us-east-edge-1".into(),
                    region: Some(0),
                    addresses: vec![Ipv4Addr::new(198, 19, 1, 1)],
                },
                HostSpec {
                    name: "eu-west-edge-1".into(),
                    region: Some(1),
                    addresses: vec![Ipv4Addr::new(198, 19, 2, 1)],
                },
                HostSpec {
                    name: "eu-west-origin".into(),
                    region: Some(1),
                    addresses: vec![Ipv4Addr::new(198, 19, 2, 2)],
                },
            ],
        };
        // The real records: if this test is killed, the next `up --hosts`
        // (or this test) removes what it left.
        let network = Network::create(spec).unwrap();
        let edge: SocketAddr = "198.19.2.1:7000".parse().unwrap();
        let ns1 = network.namespace("ns1");
        let origin = network.namespace("eu-west-origin");
        // A listener inside eu-west's edge host, serving until the test ends.
        let listener = inside(&network.namespace("eu-west-edge-1"), move || {
            TcpListener::bind(edge).unwrap()
        });
        std::thread::spawn(move || for _ in listener.incoming() {});

        assert!(reaches(None, edge), "this machine reaches every host");
        assert!(reaches(Some(&ns1), edge), "a nameserver reaches the edges");

        network.set_partitioned(1, true).unwrap();
        assert!(!reaches(None, edge));
        assert!(!reaches(Some(&ns1), edge));
        assert!(
            reaches(Some(&origin), edge),
            "inside the region, links still work"
        );
        network.set_partitioned(1, false).unwrap();
        assert!(reaches(Some(&ns1), edge), "healed");

        network.set_cut("ns1", 1, true).unwrap();
        assert!(!reaches(Some(&ns1), edge), "ns1 is cut off from eu-west");
        assert!(reaches(None, edge), "others are not");
        network.set_cut("ns1", 1, false).unwrap();
        assert!(reaches(Some(&ns1), edge));

        let record = Path::new(RECORDS).join(format!("{}.json", std::process::id()));
        assert!(record.exists());
        drop(network);
        assert!(!record.exists());
        assert!(!Path::new(&format!("/run/netns/{ns1}")).exists());
        assert!(ip(&["link", "show", &format!("m{}c", std::process::id())]).is_err());
    }

    #[test]
    fn leftovers_of_a_process_that_is_gone_are_removed() {
        if !namespaces_available() {
            eprintln!("skipped: making network namespaces needs root and iproute2");
            return;
        }
        let records = tempfile::tempdir().unwrap();
        // A pid that is not running: the largest one Linux can give.
        let gone = 4_194_304u32;
        assert!(!Path::new(&format!("/proc/{gone}")).exists());
        let namespace = format!("meridian-{gone}-test");
        let link = format!("m{gone}c");
        ip(&["netns", "add", &namespace]).unwrap();
        ip(&["link", "add", &link, "type", "bridge"]).unwrap();
        let record = Record {
            namespaces: vec![namespace.clone()],
            links: vec![link.clone()],
        };
        std::fs::write(
            records.path().join(format!("{gone}.json")),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        // And one of a process that runs (this one): left alone.
        let mine = records.path().join(format!("{}.json", std::process::id()));
        std::fs::write(&mine, b"{\"namespaces\":[],\"links\":[]}").unwrap();

        assert_eq!(clean_leftovers(records.path()).unwrap(), 1);
        assert!(!Path::new(&format!("/run/netns/{namespace}")).exists());
        assert!(ip(&["link", "show", &link]).is_err());
        assert!(mine.exists());
    }
}
