//! The seed corpus: valid messages built with hickory-proto, the shapes
//! real clients send (and a few they should not), for the mutators to
//! start from.

use crate::topology::Topology;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::IpAddr;

/// The topology the fuzz targets answer from: the demo, with static
/// records of every kind the zone holds and edges of both families, so
/// that every kind of answer (CNAME chains, MX, TXT too long for UDP,
/// AAAA) is reachable.
pub fn topology() -> Topology {
    let edges: Vec<IpAddr> = ["127.0.3.1", "127.0.3.3", "::3:1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let records: &[(&str, &str, &str)] = &[
        ("www.meridian.test.", "CNAME", "cdn.meridian.test."),
        ("alias.meridian.test.", "CNAME", "www.meridian.test."),
        ("meridian.test.", "MX", "10 mail.meridian.test."),
        ("mail.meridian.test.", "A", "127.0.0.25"),
        ("mail.meridian.test.", "AAAA", "::25"),
        ("meridian.test.", "TXT", "v=spf1 -all"),
        ("cdn.meridian.test.", "TXT", "steered and described"),
    ];
    let mut topology = Topology::demo(0).edge_addresses(3, &edges);
    for (name, rtype, value) in records {
        topology = topology.zone_record(name, rtype, value);
    }
    // Longer than any UDP reply may be: always TC over UDP, whole over TCP.
    topology.zone_record("big.meridian.test.", "TXT", &"x".repeat(3000))
}

/// Names in the zone, outside it, in odd letter case, and long.
fn names() -> Vec<Name> {
    let mut names: Vec<Name> = [
        "cdn.meridian.test.",
        "CdN.MeRiDiAn.TeSt.",
        "meridian.test.",
        "MERIDIAN.TEST.",
        "www.meridian.test.",
        "alias.meridian.test.",
        "mail.meridian.test.",
        "ns1.meridian.test.",
        "big.meridian.test.",
        "nope.meridian.test.",
        "deep.below.cdn.meridian.test.",
        "_dmarc.meridian.test.",
        "*.meridian.test.",
        "test.",
        "example.com.",
        ".",
    ]
    .iter()
    .filter_map(|name| Name::from_ascii(name).ok())
    .collect();
    // Many labels: 119 one-letter labels and the zone, 253 bytes.
    let many = format!("{}meridian.test.", "a.".repeat(119));
    names.extend(Name::from_ascii(&many).ok());
    // Long labels: three of 63 bytes, then the zone.
    let long = format!("{}meridian.test.", format!("{}.", "l".repeat(63)).repeat(3));
    names.extend(Name::from_ascii(&long).ok());
    names
}

/// The record types asked about.
const TYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SOA,
    RecordType::NS,
    RecordType::ANY,
    RecordType::TXT,
    RecordType::MX,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::AXFR,
    RecordType::OPT,
    RecordType::Unknown(65280),
];

/// The EDNS a query carries: none, a size, a flag, a version, options.
#[derive(Clone, Copy)]
enum EdnsShape {
    None,
    Size(u16),
    DnssecOk,
    Version(u8),
    Subnet(&'static str, u8),
    Cookie,
}

const EDNS: [EdnsShape; 7] = [
    EdnsShape::None,
    EdnsShape::Size(512),
    EdnsShape::Size(1232),
    EdnsShape::Size(4096),
    EdnsShape::Size(100),
    EdnsShape::DnssecOk,
    EdnsShape::Version(1),
];

/// Client Subnet options: both families, prefixes from /0 to the full
/// address.
const SUBNETS: [(&str, u8); 14] = [
    ("81.2.69.0", 24),
    ("8.8.8.0", 24),
    ("203.116.1.0", 24),
    ("5.9.0.0", 16),
    ("10.0.0.0", 8),
    ("81.2.69.142", 32),
    ("0.0.0.0", 0),
    ("127.0.0.1", 32),
    ("2001:4860:4860::", 56),
    ("2a00:1450::", 32),
    ("2001:db8::", 64),
    ("2001:db8::1", 128),
    ("::", 0),
    ("81.2.69.128", 25),
];

/// A query message.
fn query(id: u16, name: &Name, rtype: RecordType, rd: bool, edns: EdnsShape) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = rd;
    message.add_query(Query::query(name.clone(), rtype));
    let mut opt = Edns::new();
    opt.set_max_payload(1232);
    match edns {
        EdnsShape::None => return message,
        EdnsShape::Size(size) => {
            opt.set_max_payload(size);
        }
        EdnsShape::DnssecOk => {
            opt.set_dnssec_ok(true);
        }
        EdnsShape::Version(version) => {
            opt.set_version(version);
        }
        EdnsShape::Subnet(address, prefix) => {
            if let Ok(address) = address.parse::<IpAddr>() {
                let subnet = ClientSubnet::new(address, prefix, 0);
                opt.options_mut().insert(EdnsOption::Subnet(subnet));
            }
        }
        EdnsShape::Cookie => {
            opt.options_mut()
                .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        }
    }
    message.set_edns(opt);
    message
}

/// The seed corpus.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut id = 0x1000u16;
    let mut next_id = || {
        id = id.wrapping_add(0x0101);
        id
    };
    let names = names();
    for name in &names {
        for rtype in TYPES {
            for (i, edns) in EDNS.iter().enumerate() {
                // Every name and type plainly and with 1232 bytes of EDNS;
                // the other EDNS variants on a rotating subset.
                if i > 2 && (usize::from(next_id()) + i) % 5 != 0 {
                    continue;
                }
                messages.push(query(next_id(), name, rtype, i % 2 == 0, *edns));
            }
        }
    }
    // Client Subnet on the steered name and the apex, for every address
    // family and prefix.
    for name in names.iter().take(4) {
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
            for (address, prefix) in SUBNETS {
                let edns = EdnsShape::Subnet(address, prefix);
                messages.push(query(next_id(), name, rtype, true, edns));
            }
            messages.push(query(next_id(), name, rtype, true, EdnsShape::Cookie));
        }
    }
    // Other classes.
    for class in [DNSClass::CH, DNSClass::ANY, DNSClass::NONE] {
        let mut message = query(next_id(), &names[0], RecordType::A, true, EdnsShape::None);
        message.queries[0].set_query_class(class);
        messages.push(message);
    }
    // Other shapes: no question, two questions, other opcodes, a query
    // carrying an answer, and a response (which must never be answered).
    let cdn = &names[0];
    let mut none = Message::query();
    none.metadata.id = next_id();
    messages.push(none);
    let mut two = query(next_id(), cdn, RecordType::A, true, EdnsShape::Size(1232));
    two.add_query(Query::query(names[2].clone(), RecordType::SOA));
    messages.push(two);
    for op_code in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut message = query(next_id(), cdn, RecordType::SOA, false, EdnsShape::None);
        message.metadata.op_code = op_code;
        messages.push(message);
    }
    let a = Record::from_rdata(cdn.clone(), 30, RData::A(A::new(127, 0, 2, 1)));
    let mut with_answer = query(next_id(), cdn, RecordType::A, true, EdnsShape::None);
    with_answer.add_answer(a.clone());
    messages.push(with_answer);
    let mut response = query(next_id(), cdn, RecordType::A, true, EdnsShape::Size(1232));
    response.metadata.message_type = MessageType::Response;
    response.add_answer(a);
    messages.push(response);

    messages
        .iter()
        .filter_map(|message| message.to_vec().ok())
        .collect()
}
