//! Where this machine reaches a listener of the config.

use std::net::{Ipv6Addr, SocketAddr};

/// `addr` itself, or loopback for a wildcard listen address (`0.0.0.0`,
/// `[::]`), which listens there too.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => ([127, 0, 0, 1], v4.port()).into(),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, v6.port()).into(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback() {
        let reach = |text: &str| reachable(text.parse().unwrap()).to_string();
        assert_eq!(reach("0.0.0.0:53"), "127.0.0.1:53");
        assert_eq!(reach("[::]:53"), "[::1]:53");
        assert_eq!(reach("192.0.2.1:53"), "192.0.2.1:53");
    }
}
