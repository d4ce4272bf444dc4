//! Readiness probes: is a child answering on its data plane yet?
//!
//! `up` only reports the topology ready when every role answers the way a
//! user would use it: origins and edges an HTTP GET, GeoDNS a real DNS query.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::time::Duration;

/// How long one probe attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// One way to check a role is serving.
#[derive(Debug, Clone)]
pub enum Probe {
    /// `GET url` answers 200.
    Http {
        /// e.g. `http://127.0.2.1:8080/_meridian/health`.
        url: String,
    },
    /// A TCP connection is accepted (the cluster bus).
    Tcp {
        /// The address.
        addr: SocketAddr,
    },
    /// An SOA query for `zone` over UDP gets an authoritative NOERROR.
    Dns {
        /// The server.
        server: SocketAddr,
        /// The zone apex.
        zone: String,
    },
}

impl Probe {
    /// One attempt; `Ok` when the role answered correctly.
    pub async fn check(&self, http: &reqwest::Client) -> Result<(), String> {
        match self {
            Probe::Http { url } => {
                let response = http
                    .get(url)
                    .timeout(ATTEMPT_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url} answered {}", response.status()))
                }
            }
            Probe::Dns { server, zone } => dns_soa(*server, zone).await,
            Probe::Tcp { addr } => {
                tokio::time::timeout(ATTEMPT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| format!("{addr} did not accept in time"))?
                    .map(drop)
                    .map_err(|e| format!("{addr}: {e}"))
            }
        }
    }
}

async fn dns_soa(server: SocketAddr, zone: &str) -> Result<(), String> {
    let name = Name::from_ascii(zone).map_err(|e| e.to_string())?;
    let mut query = Message::query();
    query.add_query(Query::query(name, RecordType::SOA));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut buffer = [0u8; 1500];
    let received = tokio::time::timeout(ATTEMPT_TIMEOUT, socket.recv(&mut buffer))
        .await
        .map_err(|_| "no DNS answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buffer[..received]).map_err(|e| e.to_string())?;
    if answer.metadata.id != query.metadata.id {
        return Err("DNS answer for another query".to_owned());
    }
    if answer.metadata.response_code == ResponseCode::NoError && answer.metadata.authoritative {
        Ok(())
    } else {
        Err(format!("DNS answered {}", answer.metadata.response_code))
    }
}
