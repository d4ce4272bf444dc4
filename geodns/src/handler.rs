//! The DNS request handler: hickory-server hands it each parsed query.
//!
//! Thin on purpose. It checks the query is one it answers (opcode, class,
//! EDNS version), works out which address the answer is for (the EDNS
//! Client Subnet when present and usable, RFC 7871, else the source
//! address), asks [`Zone`] what the name holds and [`Steering`] which region
//! is nearest, and writes the response: authoritative (AA), never recursive
//! (RA clear), at most 1232 bytes over UDP (TC set when it does not fit).

use crate::geo::{GeoDatabase, is_public};
use crate::health::HealthView;
use crate::metrics::DnsMetrics;
use crate::steering::{Steering, choose};
use crate::zone::{Lookup, Zone};
use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::IpAddr;
use std::sync::Arc;

/// The largest UDP response Meridian sends: the 2020 DNS flag day's value,
/// which avoids IP fragmentation on practically every path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Everything needed to answer. Only the health view changes while it
/// serves, and only through atomics.
pub struct GeoDnsHandler {
    zone: Zone,
    geo: GeoDatabase,
    steering: Steering,
    health: Arc<HealthView>,
    fail_open: bool,
    metrics: Arc<DnsMetrics>,
}

impl GeoDnsHandler {
    /// A handler answering for `zone`, placing clients with `geo`, skipping
    /// regions `health` says are down.
    pub fn new(
        zone: Zone,
        geo: GeoDatabase,
        steering: Steering,
        health: Arc<HealthView>,
        fail_open: bool,
        metrics: Arc<DnsMetrics>,
    ) -> Self {
        GeoDnsHandler {
            zone,
            geo,
            steering,
            health,
            fail_open,
            metrics,
        }
    }
}

/// The address an answer is tailored to, and the ECS option to echo.
struct Client {
    ip: IpAddr,
    /// The request's ECS option, if the answer is based on it.
    subnet: Option<ClientSubnet>,
    /// The request's ECS option when it was present but not usable (source
    /// prefix 0, or not a public address): echoed with scope 0.
    ignored_subnet: Option<ClientSubnet>,
}

fn client_of(request: &Request) -> Client {
    let subnet = request
        .edns
        .as_ref()
        .and_then(|edns| match edns.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
            _ => None,
        });
    match subnet {
        // RFC 7871 §7.1.2: a source prefix of 0 asks us not to use the
        // address; a non-public one cannot be located.
        Some(s) if s.source_prefix() > 0 && is_public(s.addr()) => Client {
            ip: s.addr(),
            subnet: Some(s),
            ignored_subnet: None,
        },
        other => Client {
            ip: request.src().ip(),
            subnet: None,
            ignored_subnet: other,
        },
    }
}

#[async_trait::async_trait]
impl RequestHandler for GeoDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;

        // Our OPT record: present iff the query had one (RFC 6891 §6.1.1),
        // its size the smaller of the client's and ours, so hickory caps
        // the UDP response at what both sides accept.
        let mut edns = request.edns.as_ref().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_version(0);
            edns.set_max_payload(query_edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });

        let rcode_only = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.queries().len() != 1 {
            Some(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: we speak EDNS version 0 only.
            Some(ResponseCode::BADVERS)
        } else {
            None
        };
        if let Some(rcode) = rcode_only {
            if let Some(edns) = edns.as_mut() {
                edns.set_rcode_high(rcode.high());
            }
            metadata.response_code = rcode;
            let qtype = match request.queries.queries() {
                [query] => query.query_type(),
                _ => RecordType::NULL,
            };
            self.metrics.query(qtype, rcode);
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let response = builder.build_no_records(metadata);
            return send(&mut response_handle, response, request).await;
        }

        let query = &request.queries.queries()[0];
        let client = client_of(request);
        let mut scope = 0;
        let mut answers: Vec<&Record> = Vec::new();
        let mut additionals: Vec<&Record> = Vec::new();
        let mut negative = false;

        let lookup = if query.query_class() == DNSClass::IN {
            self.zone.lookup(query.name(), query.query_type())
        } else {
            Lookup::Refused
        };
        match lookup {
            Lookup::Refused => metadata.response_code = ResponseCode::Refused,
            Lookup::Answer {
                answers: records,
                additionals: glue,
            } => {
                metadata.authoritative = true;
                answers = records.iter().collect();
                additionals = glue;
            }
            Lookup::Steered { name, record_type } => {
                metadata.authoritative = true;
                let placement = self.geo.place(client.ip);
                let order = self.steering.order(placement.location.as_ref());
                let health = &self.health;
                match choose(&order.regions, |r| health.region_up(r), self.fail_open) {
                    Some(choice) => {
                        let records = self.zone.steered_records(name, choice.region, record_type);
                        // Only the edges that are up; all of them when
                        // failing open with everything down.
                        answers = records
                            .iter()
                            .filter(|r| choice.fail_open || health.edge_up(choice.region, r.edge))
                            .map(|r| &r.record)
                            .collect();
                        negative = answers.is_empty();
                        self.metrics.steered(choice.region);
                    }
                    None => metadata.response_code = ResponseCode::ServFail,
                }
                if client.subnet.is_some() {
                    scope = placement.network_prefix;
                    self.metrics.ecs_query();
                }
            }
            Lookup::NoData => {
                metadata.authoritative = true;
                negative = true;
            }
            Lookup::NxDomain => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                negative = true;
            }
        }

        if let Some(edns) = edns.as_mut()
            && let Some(subnet) = client.subnet.or(client.ignored_subnet)
        {
            let echoed = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), scope);
            edns.options_mut().insert(EdnsOption::Subnet(echoed));
        }
        let soa: &[Record] = if negative {
            self.zone.negative_soa()
        } else {
            &[]
        };
        self.metrics
            .query(query.query_type(), metadata.response_code);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.build(
            metadata,
            answers,
            std::iter::empty(),
            soa.iter(),
            additionals,
        );
        send(&mut response_handle, response, request).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response_handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, src = %request.src(), "could not send a DNS response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}
