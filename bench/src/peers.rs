//! The servers Meridian is compared with, set up as their users set them up.
//!
//! A comparison is only worth something if the peer is tuned the way the
//! people who run it tune it. Each peer here gets the settings its own
//! documentation recommends for a cache on one core, in front of the same
//! origin as Meridian, with the same cache budget:
//!
//! - **nginx** (`proxy_cache`): one worker, the cache on tmpfs
//!   (`/dev/shm`), `sendfile`, `open_file_cache`, keep-alive to the
//!   origin, no access log, cache lock on (nginx's coalescing). Not
//!   `tcp_nopush`: with `sendfile` it holds back the last partial segment
//!   of each keep-alive response until the client's delayed ACK, stalling
//!   100 KiB hits for 40 ms each (measured: 0.8k against 13k req/s);
//! - **Varnish** (`-s malloc`): one thread pool (one core), memory
//!   storage of the same size, the built-in VCL (which honours the origin's
//!   `Cache-Control`, as Meridian does).
//!
//! A peer that is not installed is skipped with the Debian package that
//! provides it.

use crate::BenchError;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where programs are looked for besides `PATH`: the peers are daemons and
/// Debian installs them in `sbin`, which a normal user's `PATH` lacks.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The full path of `program`, from `PATH` or the `sbin` directories.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A peer that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The peer's name.
    pub peer: String,
    /// Why, with what to install.
    pub reason: String,
}

impl Skipped {
    /// `program` is not installed; `package` is the Debian package.
    pub fn not_installed(peer: &str, program: &str, package: &str) -> Skipped {
        Skipped {
            peer: peer.to_owned(),
            reason: format!(
                "`{program}` is not installed: skipped (install the Debian package \
                 {package}: `sudo apt-get install {package}`)"
            ),
        }
    }

    /// The line a report's notes give it: `peer: reason`.
    pub fn note(&self) -> String {
        format!("{}: {}", self.peer, self.reason)
    }
}

/// An HTTP cache Meridian's edge is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpPeer {
    /// nginx with `proxy_cache`.
    Nginx,
    /// Varnish with `-s malloc`.
    Varnish,
}

impl HttpPeer {
    /// Both peers, in the order they run.
    pub const ALL: [HttpPeer; 2] = [HttpPeer::Nginx, HttpPeer::Varnish];

    /// Its name in reports, its program, and the Debian package that
    /// provides it.
    fn names(self) -> [&'static str; 3] {
        match self {
            HttpPeer::Nginx => ["nginx", "nginx", "nginx-light"],
            HttpPeer::Varnish => ["varnish", "varnishd", "varnish"],
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// Its executable, or why it is skipped.
    pub fn locate(self) -> Result<PathBuf, Skipped> {
        let [name, program, package] = self.names();
        find_program(program).ok_or_else(|| Skipped::not_installed(name, program, package))
    }

    /// Writes the peer's configuration under `workdir` (which must exist)
    /// and returns the arguments that run it in the foreground, listening
    /// on `listen`, caching up to `cache_bytes` from the origin at `origin`.
    pub fn prepare(
        self,
        workdir: &Path,
        listen: SocketAddr,
        origin: SocketAddr,
        cache_bytes: u64,
    ) -> Result<Vec<String>, BenchError> {
        if self == HttpPeer::Varnish {
            return Ok(varnish_args(workdir, listen, origin, cache_bytes));
        }
        let cache_dir = workdir.join("cache");
        std::fs::create_dir_all(&cache_dir)
            .map_err(BenchError::io("create a cache directory for a peer"))?;
        let conf = nginx_conf(&NginxSettings {
            workdir,
            cache_dir: &cache_dir,
            listen,
            origin,
            cache_bytes,
            as_root: nix::unistd::geteuid().is_root(),
        });
        let conf_path = workdir.join("nginx.conf");
        write(&conf_path, &conf)?;
        let [workdir, conf, errors] = [workdir, &conf_path, &workdir.join("error.log")]
            .map(|path| path.display().to_string());
        Ok(["-p", &format!("{workdir}/"), "-c", &conf, "-e", &errors]
            .map(str::to_owned)
            .to_vec())
    }
}

/// What an nginx configuration depends on.
struct NginxSettings<'a> {
    workdir: &'a Path,
    cache_dir: &'a Path,
    listen: SocketAddr,
    origin: SocketAddr,
    cache_bytes: u64,
    /// Whether nginx runs as root (then its worker must too, to write the
    /// cache directory this process created).
    as_root: bool,
}

/// nginx as a one-core `proxy_cache`, tuned the way its guides tune it.
fn nginx_conf(s: &NginxSettings<'_>) -> String {
    let user = if s.as_root { "user root;\n" } else { "" };
    let workdir = s.workdir.display();
    format!(
        "# Written by Meridian's bench: nginx proxy_cache on one core.\n\
         {user}worker_processes 1;\n\
         daemon off;\n\
         pid {workdir}/nginx.pid;\n\
         error_log {workdir}/error.log warn;\n\
         worker_rlimit_nofile 65536;\n\
         events {{ worker_connections 8192; multi_accept on; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 sendfile on;\n\
         \x20 tcp_nodelay on;\n\
         \x20 keepalive_requests 1000000;\n\
         \x20 open_file_cache max=10000 inactive=60s;\n\
         \x20 open_file_cache_valid 60s;\n\
         \x20 open_file_cache_errors on;\n\
         \x20 client_body_temp_path {workdir}/client_body;\n\
         \x20 proxy_temp_path {workdir}/proxy_temp;\n\
         \x20 fastcgi_temp_path {workdir}/fastcgi_temp;\n\
         \x20 uwsgi_temp_path {workdir}/uwsgi_temp;\n\
         \x20 scgi_temp_path {workdir}/scgi_temp;\n\
         \x20 proxy_cache_path {cache} levels=1:2 keys_zone=bench:64m max_size={bytes} \
         inactive=60m use_temp_path=off;\n\
         \x20 upstream origin {{ server {origin}; keepalive 32; }}\n\
         \x20 server {{\n\
         \x20   listen {listen};\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://origin;\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n\
         \x20     proxy_cache bench;\n\
         \x20     proxy_cache_lock on;\n\
         \x20     add_header X-Cache-Status $upstream_cache_status;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        cache = s.cache_dir.display(),
        bytes = s.cache_bytes,
        origin = s.origin,
        listen = s.listen,
    )
}

/// varnishd in the foreground with malloc storage and one thread pool.
fn varnish_args(
    workdir: &Path,
    listen: SocketAddr,
    origin: SocketAddr,
    cache_bytes: u64,
) -> Vec<String> {
    [
        "-F",
        "-n",
        &workdir.join("varnish").display().to_string(),
        "-a",
        &listen.to_string(),
        "-b",
        &origin.to_string(),
        "-s",
        &format!("malloc,{cache_bytes}"),
        "-p",
        "thread_pools=1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(BenchError::io("write a peer's configuration"))
}

/// A scratch directory for a server, removed on drop: on tmpfs
/// (`/dev/shm`) when there is one, since a peer keeps its disk cache there.
pub fn workdir() -> Result<tempfile::TempDir, BenchError> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("meridian-bench-")
        .tempdir_in(base)
        .map_err(BenchError::io("create a scratch directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_is_tuned_as_its_users_tune_it() {
        let conf = nginx_conf(&NginxSettings {
            workdir: Path::new("/tmp/w"),
            cache_dir: Path::new("/dev/shm/c"),
            listen: "127.0.0.1:8081".parse().unwrap(),
            origin: "127.0.0.1:9000".parse().unwrap(),
            cache_bytes: 1 << 28,
            as_root: false,
        });
        for line in [
            "worker_processes 1;",
            "daemon off;",
            "sendfile on;",
            "open_file_cache max=10000 inactive=60s;",
            "access_log off;",
            "proxy_cache_path /dev/shm/c levels=1:2 keys_zone=bench:64m max_size=268435456",
            "upstream origin { server 127.0.0.1:9000; keepalive 32; }",
            "listen 127.0.0.1:8081;",
            "proxy_cache bench;",
            "proxy_cache_lock on;",
        ] {
            assert!(conf.contains(line), "missing {line:?} in\n{conf}");
        }
        assert!(!conf.contains("user root"));
        assert!(!conf.contains("tcp_nopush"));
        // Braces balance: nginx would refuse the file otherwise.
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }

    #[test]
    fn each_peer_is_prepared_to_run_in_the_foreground() {
        let scratch = workdir().unwrap();
        let dir = scratch.path().display();
        let (listen, origin) = (
            "127.0.0.1:8082".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        );
        let prepare = |peer: HttpPeer| peer.prepare(scratch.path(), listen, origin, 1000).unwrap();
        let nginx = prepare(HttpPeer::Nginx).join(" ");
        assert_eq!(
            nginx,
            format!("-p {dir}/ -c {dir}/nginx.conf -e {dir}/error.log")
        );
        let conf = std::fs::read_to_string(scratch.path().join("nginx.conf")).unwrap();
        assert!(conf.contains("listen 127.0.0.1:8082;"), "{conf}");
        assert!(scratch.path().join("cache").is_dir());
        let varnish = prepare(HttpPeer::Varnish).join(" ");
        let expected = "-a 127.0.0.1:8082 -b 127.0.0.1:9000 -s malloc,1000 -p thread_pools=1";
        assert_eq!(varnish, format!("-F -n {dir}/varnish {expected}"));
    }

    #[test]
    fn a_missing_peer_names_its_package() {
        let skipped = Skipped::not_installed("nginx", "nginx", "nginx-light");
        assert!(skipped.reason.contains("apt-get install nginx-light"));
        assert_eq!(find_program("surely-not-a-program-meridian"), None);
        assert!(find_program("sh").is_some());
    }
}
