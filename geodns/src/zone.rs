//! The zone GeoDNS is authoritative for, and what it holds at each name.
//!
//! Built once from the config: the apex SOA and NS records, glue for
//! in-zone nameservers, the static records of `[[zone.records]]`, and for
//! every steered name the A and AAAA records of every region, prebuilt so
//! answering a query is a lookup, not a build. [`Zone::lookup`] says what a
//! query gets: the CNAMEs followed from the query name, then static records,
//! a steered answer that depends on the client, NODATA, NXDOMAIN, or REFUSED
//! for names outside the zone. It does no I/O and knows nothing about clients.

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// SOA timers for secondaries (Meridian has none, but the fields must be sane).
const SOA_REFRESH_SECONDS: i32 = 3600;
const SOA_RETRY_SECONDS: i32 = 600;
const SOA_EXPIRE_SECONDS: i32 = 604_800;

/// The RRset an ANY query gets at a name with static records (RFC 8482:
/// one RRset, not the whole node): the first of these the name has.
const ANY_PREFERENCE: [RecordType; 4] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
];

/// The authoritative data, ready to answer from.
#[derive(Debug)]
pub struct Zone {
    apex: LowerName,
    soa: Vec<Record>,
    /// The SOA as sent in the authority section of negative answers: its TTL
    /// is the negative-caching TTL (RFC 2308 §3).
    negative_soa: Vec<Record>,
    ns: Vec<Record>,
    /// Glue for an NS answer: the addresses of in-zone nameservers.
    ns_glue: Vec<Record>,
    /// Static data (records from the config and nameserver addresses) by name.
    nodes: HashMap<LowerName, Node>,
    /// Every name that exists: names with records and the empty
    /// non-terminals between them and the apex.
    existing: HashSet<LowerName>,
    /// Steered name → its index in `steered_records`.
    steered: HashMap<LowerName, usize>,
    /// `[name][region]` → that region's edge records for that name.
    steered_records: Vec<Vec<RegionRecords>>,
    /// How many ways a steered answer is turned (see [`Zone::turns`]).
    turns: usize,
}

/// The most ways a steered answer is turned: 60 is divisible by every
/// number of edges up to 6 (and by 10, 12, 15, 20, 30), so their turns
/// come round equally often; regions of other sizes take turns almost as
/// evenly.
const MAX_TURNS: usize = 60;

/// The static records at one name.
#[derive(Debug, Default)]
struct Node {
    sets: Vec<RrSet>,
    /// Set when the name is an alias: its CNAME's target.
    alias: Option<LowerName>,
}

/// The records of one name and type.
#[derive(Debug)]
struct RrSet {
    record_type: RecordType,
    records: Vec<Record>,
    /// For the additional section: addresses of in-zone MX exchanges.
    additionals: Vec<Record>,
}

impl Node {
    fn set(&self, record_type: RecordType) -> Option<&RrSet> {
        self.sets.iter().find(|s| s.record_type == record_type)
    }
}

/// One region's edge addresses as records for one steered name.
#[derive(Debug, Default)]
struct RegionRecords {
    a: Vec<EdgeRecord>,
    aaaa: Vec<EdgeRecord>,
}

/// The address record of one edge.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRecord {
    /// The edge's index in its region's `edge_addresses`.
    pub edge: usize,
    /// Its A or AAAA record.
    pub record: Record,
}

/// What a query gets from the zone: the CNAME records met on the way
/// (empty unless the query name is an alias), then what the last name holds.
#[derive(Debug, PartialEq)]
pub struct Lookup<'z> {
    /// CNAME records from the query name on, in order.
    pub chain: Vec<&'z Record>,
    /// What the end of the chain holds.
    pub outcome: Outcome<'z>,
}

/// What one name holds for a query type.
#[derive(Debug, PartialEq)]
pub enum Outcome<'z> {
    /// The name is not in this zone: refuse, never recurse.
    Refused,
    /// Records that do not depend on the client.
    Answer {
        /// The answer section (after the chain).
        answers: &'z [Record],
        /// Glue for the additional section.
        additionals: &'z [Record],
    },
    /// A steered name: the answer is the edges of the client's region.
    Steered {
        /// Which steered name.
        name: usize,
        /// A or AAAA.
        record_type: RecordType,
    },
    /// The name exists without records of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The chain leads out of the zone: the CNAMEs are the whole answer
    /// (the client's resolver follows the rest itself).
    Elsewhere,
}

impl Lookup<'_> {
    fn direct(outcome: Outcome<'_>) -> Lookup<'_> {
        Lookup {
            chain: Vec::new(),
            outcome,
        }
    }
}

/// What one step of a lookup found.
enum Step<'z> {
    Done(Outcome<'z>),
    /// An alias: its CNAME records and its target.
    Alias(&'z [Record], &'z LowerName),
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

/// TXT data as the 255-byte character-strings the wire format allows.
fn txt(text: &str) -> TXT {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
    if chunks.is_empty() {
        TXT::from_bytes(vec![&b""[..]])
    } else {
        TXT::from_bytes(chunks)
    }
}

fn record_data(data: &config::RecordData) -> RData {
    match data {
        config::RecordData::A(v4) => RData::A(A(*v4)),
        config::RecordData::Aaaa(v6) => RData::AAAA(AAAA(*v6)),
        config::RecordData::Cname(target) => RData::CNAME(CNAME(target.hickory().clone())),
        config::RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, exchange.hickory().clone())),
        config::RecordData::Txt(text) => RData::TXT(txt(text)),
    }
}

impl Zone {
    /// The zone described by a validated config.
    pub fn from_config(config: &config::Config) -> Self {
        let zone = &config.zone;
        let apex = zone.name.hickory().clone();
        let apex_lower = LowerName::new(&apex);

        let primary_ns = zone
            .nameservers
            .first()
            .map_or_else(|| apex.clone(), |ns| ns.name.hickory().clone());
        let soa_data = SOA::new(
            primary_ns,
            zone.hostmaster.hickory().clone(),
            zone.serial,
            SOA_REFRESH_SECONDS,
            SOA_RETRY_SECONDS,
            SOA_EXPIRE_SECONDS,
            zone.negative_ttl_seconds,
        );
        let soa = vec![Record::from_rdata(
            apex.clone(),
            zone.ttl_seconds,
            RData::SOA(soa_data.clone()),
        )];
        let negative_ttl = zone.ttl_seconds.min(zone.negative_ttl_seconds);
        let negative_soa = vec![Record::from_rdata(
            apex.clone(),
            negative_ttl,
            RData::SOA(soa_data),
        )];

        let mut existing = HashSet::new();
        let mut add_existing = |owner: &LowerName| {
            // The name and every ancestor down to the apex exist.
            let mut current = owner.clone();
            while apex_lower.zone_of(&current) {
                let is_apex = current == apex_lower;
                existing.insert(current.clone());
                if is_apex {
                    break;
                }
                current = current.base_name();
            }
        };
        add_existing(&apex_lower);

        // Static records, grouped into RRsets in file order.
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let add = |record: Record, nodes: &mut HashMap<LowerName, Node>| {
            let node = nodes.entry(LowerName::new(&record.name)).or_default();
            if let RData::CNAME(CNAME(target)) = &record.data {
                node.alias = Some(LowerName::new(target));
            }
            match node
                .sets
                .iter_mut()
                .find(|s| s.record_type == record.record_type())
            {
                Some(set) => set.records.push(record),
                None => node.sets.push(RrSet {
                    record_type: record.record_type(),
                    records: vec![record],
                    additionals: Vec::new(),
                }),
            }
        };

        let mut ns = Vec::new();
        for server in &zone.nameservers {
            let server_name = server.name.hickory().clone();
            ns.push(Record::from_rdata(
                apex.clone(),
                zone.ttl_seconds,
                RData::NS(NS(server_name.clone())),
            ));
            let lower = LowerName::new(&server_name);
            if apex_lower.zone_of(&lower) {
                add_existing(&lower);
                for ip in &server.addresses {
                    add(
                        address_record(&server_name, zone.ttl_seconds, *ip),
                        &mut nodes,
                    );
                }
            }
        }
        for record in &zone.records {
            let owner = record.name.hickory().clone();
            add_existing(&LowerName::new(&owner));
            add(
                Record::from_rdata(owner, record.ttl_seconds, record_data(&record.data)),
                &mut nodes,
            );
        }
        let addresses_of = |nodes: &HashMap<LowerName, Node>, host: &Name| -> Vec<Record> {
            let Some(node) = nodes.get(&LowerName::new(host)) else {
                return Vec::new();
            };
            [RecordType::A, RecordType::AAAA]
                .into_iter()
                .filter_map(|t| node.set(t))
                .flat_map(|set| set.records.iter().cloned())
                .collect()
        };
        let ns_glue = ns
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(NS(target)) => Some(addresses_of(&nodes, target)),
                _ => None,
            })
            .flatten()
            .collect();
        // Additional-section processing for MX (RFC 1035 §3.3.9).
        let mx_additionals: Vec<(LowerName, Vec<Record>)> = nodes
            .iter()
            .filter_map(|(owner, node)| {
                let set = node.set(RecordType::MX)?;
                let glue = set
                    .records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(addresses_of(&nodes, &mx.exchange)),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                Some((owner.clone(), glue))
            })
            .collect();
        for (owner, glue) in mx_additionals {
            if let Some(set) = nodes.get_mut(&owner).and_then(|node| {
                node.sets
                    .iter_mut()
                    .find(|s| s.record_type == RecordType::MX)
            }) {
                set.additionals = glue;
            }
        }

        let mut steered = HashMap::new();
        let mut steered_records = Vec::new();
        for (index, steered_name) in zone.steered_names.iter().enumerate() {
            let owner = steered_name.hickory().clone();
            let lower = LowerName::new(&owner);
            add_existing(&lower);
            steered.insert(lower, index);
            let per_region = config
                .regions
                .iter()
                .map(|region| {
                    let mut records = RegionRecords::default();
                    for (edge, ip) in region.edge_addresses.iter().enumerate() {
                        let record = EdgeRecord {
                            edge,
                            record: address_record(&owner, zone.steered_ttl_seconds, *ip),
                        };
                        match ip {
                            IpAddr::V4(_) => records.a.push(record),
                            IpAddr::V6(_) => records.aaaa.push(record),
                        }
                    }
                    records
                })
                .collect();
            steered_records.push(per_region);
        }

        // The least common multiple of every region's number of edges
        // of each family, so that each region's edges each come first
        // equally often.
        let turns = config
            .regions
            .iter()
            .flat_map(|region| {
                let v4 = region
                    .edge_addresses
                    .iter()
                    .filter(|ip| ip.is_ipv4())
                    .count();
                [v4, region.edge_addresses.len() - v4]
            })
            .filter(|&count| count > 0)
            .fold(1, |turns, count| {
                let lcm = turns / gcd(turns, count) * count;
                if lcm > MAX_TURNS { turns } else { lcm }
            });
        Zone {
            apex: apex_lower,
            soa,
            negative_soa,
            ns,
            ns_glue,
            nodes,
            existing,
            steered,
            steered_records,
            turns,
        }
    }

    /// How many different turns steered answers take: a steered answer
    /// depends on its query's ID only through `id % turns` (see
    /// [`crate::answer`]), which is what the UDP answer cache keys it by.
    pub fn turns(&self) -> usize {
        self.turns
    }

    /// The zone apex.
    pub fn apex(&self) -> &LowerName {
        &self.apex
    }

    /// The SOA for the authority section of NODATA and NXDOMAIN answers.
    pub fn negative_soa(&self) -> &[Record] {
        &self.negative_soa
    }

    /// What a query for `qname`/`qtype` gets. Aliases are followed inside
    /// the zone, at most [`config::MAX_CNAME_CHAIN`] of them (validation
    /// refuses loops and longer chains).
    pub fn lookup(&self, qname: &LowerName, qtype: RecordType) -> Lookup<'_> {
        if !self.apex.zone_of(qname) {
            return Lookup::direct(Outcome::Refused);
        }
        let mut chain = Vec::new();
        let mut current = qname;
        loop {
            match self.step(current, qtype) {
                Step::Done(outcome) => return Lookup { chain, outcome },
                Step::Alias(cname, target) => {
                    chain.extend(cname);
                    if !self.apex.zone_of(target) || chain.len() > config::MAX_CNAME_CHAIN {
                        return Lookup {
                            chain,
                            outcome: Outcome::Elsewhere,
                        };
                    }
                    current = target;
                }
            }
        }
    }

    /// What `name` (inside the zone) holds for `qtype`.
    fn step(&self, name: &LowerName, qtype: RecordType) -> Step<'_> {
        let node = self.nodes.get(name);
        if let Some(&index) = self.steered.get(name) {
            return Step::Done(match qtype {
                RecordType::A | RecordType::AAAA => Outcome::Steered {
                    name: index,
                    record_type: qtype,
                },
                // RFC 8482: answer ANY with one RRset, not the whole node.
                RecordType::ANY => Outcome::Steered {
                    name: index,
                    record_type: RecordType::A,
                },
                _ => match node.and_then(|n| n.set(qtype)) {
                    Some(set) => answer(set),
                    None => Outcome::NoData,
                },
            });
        }
        if let Some(node) = node
            && node.alias.is_some()
            && let Some(set) = node.set(RecordType::CNAME)
            && let Some(target) = &node.alias
        {
            return match qtype {
                RecordType::CNAME | RecordType::ANY => Step::Done(answer(set)),
                _ => Step::Alias(&set.records, target),
            };
        }
        if *name == self.apex {
            match qtype {
                RecordType::SOA | RecordType::ANY => {
                    return Step::Done(Outcome::Answer {
                        answers: &self.soa,
                        additionals: &[],
                    });
                }
                RecordType::NS => {
                    return Step::Done(Outcome::Answer {
                        answers: &self.ns,
                        additionals: &self.ns_glue,
                    });
                }
                _ => {}
            }
        }
        let set = node.and_then(|node| match qtype {
            RecordType::ANY => ANY_PREFERENCE.iter().find_map(|t| node.set(*t)),
            _ => node.set(qtype),
        });
        Step::Done(match set {
            Some(set) => answer(set),
            None if self.existing.contains(name) => Outcome::NoData,
            None => Outcome::NxDomain,
        })
    }

    /// The edge records of `region` for steered name `name`, of `record_type`
    /// (A or AAAA); empty when the region has no address of that family.
    pub fn steered_records(
        &self,
        name: usize,
        region: usize,
        record_type: RecordType,
    ) -> &[EdgeRecord] {
        let Some(records) = self.steered_records.get(name).and_then(|r| r.get(region)) else {
            return &[];
        };
        match record_type {
            RecordType::A => &records.a,
            RecordType::AAAA => &records.aaaa,
            _ => &[],
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn answer(set: &RrSet) -> Outcome<'_> {
    Outcome::Answer {
        answers: &set.records,
        additionals: &set.additionals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn demo() -> Zone {
        Zone::from_config(&config::Config::demo())
    }

    fn lower(name: &str) -> LowerName {
        LowerName::from_str(name).unwrap()
    }

    /// The demo zone with `records` appended to `[zone]`.
    fn with_records(records: &str) -> Zone {
        let text = config::DEMO_TOML.replacen("[geodns]", &format!("{records}\n[geodns]"), 1);
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        Zone::from_config(&config)
    }

    fn outcome<'z>(zone: &'z Zone, name: &str, qtype: RecordType) -> Outcome<'z> {
        let lookup = zone.lookup(&lower(name), qtype);
        assert!(lookup.chain.is_empty(), "{name} is not an alias");
        lookup.outcome
    }

    fn answers<'z>(outcome: &Outcome<'z>) -> &'z [Record] {
        match outcome {
            Outcome::Answer { answers, .. } => answers,
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn apex_has_soa_and_ns_with_glue() {
        let zone = demo();
        let soa = outcome(&zone, "meridian.test.", RecordType::SOA);
        assert_eq!(answers(&soa).len(), 1);
        assert_eq!(answers(&soa)[0].record_type(), RecordType::SOA);
        match outcome(&zone, "meridian.test.", RecordType::NS) {
            Outcome::Answer {
                answers,
                additionals,
            } => {
                // One NS per GeoDNS server of the demo, each with its glue.
                assert_eq!(answers.len(), 2);
                let glue: Vec<String> = additionals.iter().map(|r| r.name.to_ascii()).collect();
                assert_eq!(glue, ["ns1.meridian.test.", "ns2.meridian.test."]);
            }
            other => panic!("{other:?}"),
        }
        let glue = outcome(&zone, "ns1.meridian.test.", RecordType::A);
        assert_eq!(answers(&glue).len(), 1);
    }

    #[test]
    fn names_compare_case_insensitively() {
        let zone = demo();
        assert!(matches!(
            outcome(&zone, "CDN.Meridian.TEST.", RecordType::A),
            Outcome::Steered {
                name: 0,
                record_type: RecordType::A
            }
        ));
    }

    #[test]
    fn steered_name_answers_a_aaaa_and_any_as_one_rrset() {
        let zone = demo();
        let cdn = "cdn.meridian.test.";
        assert!(matches!(
            outcome(&zone, cdn, RecordType::AAAA),
            Outcome::Steered {
                record_type: RecordType::AAAA,
                ..
            }
        ));
        assert!(matches!(
            outcome(&zone, cdn, RecordType::ANY),
            Outcome::Steered {
                record_type: RecordType::A,
                ..
            }
        ));
        assert_eq!(outcome(&zone, cdn, RecordType::TXT), Outcome::NoData);
        let eu = zone.steered_records(0, 1, RecordType::A);
        assert_eq!(eu.len(), 2);
        assert_eq!(
            &eu[0].record.data,
            &RData::A(A("127.0.2.1".parse().unwrap()))
        );
        assert_eq!(eu[0].record.ttl, 30);
        assert_eq!((eu[0].edge, eu[1].edge), (0, 1));
        assert!(zone.steered_records(0, 1, RecordType::AAAA).is_empty());
    }

    #[test]
    fn every_region_size_divides_the_turns() {
        assert_eq!(demo().turns(), 2, "two edges in every region");
        let sized = |sizes: &[usize]| {
            let mut text = config::DEMO_TOML.to_owned();
            for (region, size) in sizes.iter().enumerate() {
                let r = region + 1;
                let demo = format!("edge_addresses = [\"127.0.{r}.1\", \"127.0.{r}.3\"]");
                let addresses: Vec<String> = (0..*size)
                    .map(|i| format!("\"127.0.{r}.{}\"", 10 + i))
                    .collect();
                text = text.replace(
                    &demo,
                    &format!("edge_addresses = [{}]", addresses.join(", ")),
                );
            }
            let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
            Zone::from_config(&config).turns()
        };
        assert_eq!(sized(&[1, 1, 1]), 1);
        assert_eq!(sized(&[2, 3, 4]), 12);
        assert_eq!(sized(&[5, 4, 3]), 60);
        // Past 60, a size that would take it further is left out.
        assert_eq!(sized(&[5, 4, 7]), 20);
    }

    #[test]
    fn negative_answers() {
        let zone = demo();
        let cases = [
            ("nosuch.meridian.test.", RecordType::A, Outcome::NxDomain),
            ("deep.cdn.meridian.test.", RecordType::A, Outcome::NxDomain),
            ("meridian.test.", RecordType::A, Outcome::NoData),
            ("ns1.meridian.test.", RecordType::MX, Outcome::NoData),
        ];
        for (name, qtype, expected) in cases {
            assert_eq!(outcome(&zone, name, qtype), expected, "{name} {qtype}");
        }
        assert_eq!(zone.negative_soa()[0].ttl, 60);
    }

    #[test]
    fn outside_the_zone_is_refused() {
        let zone = demo();
        for name in ["example.com.", "test.", "xmeridian.test."] {
            assert_eq!(
                outcome(&zone, name, RecordType::A),
                Outcome::Refused,
                "{name}"
            );
        }
    }

    #[test]
    fn empty_non_terminals_exist() {
        let text =
            config::DEMO_TOML.replace("[\"cdn.meridian.test.\"]", "[\"a.b.meridian.test.\"]");
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let zone = Zone::from_config(&config);
        assert_eq!(
            outcome(&zone, "b.meridian.test.", RecordType::A),
            Outcome::NoData
        );
    }

    use kit::zone_records as records;

    #[test]
    fn static_records_answer_by_type() {
        let zone = with_records(&records(&format!(
            "mail A 192.0.2.25 | mail A 192.0.2.26 | mail AAAA 2001:db8::25 \
             | @ MX 10 mail.meridian.test. | @ MX 20 mx.example.net. | @ TXT {} \
             | cdn TXT steered and described | a.deep TXT x",
            "v".repeat(300)
        )));
        let a = outcome(&zone, "mail.meridian.test.", RecordType::A);
        assert_eq!(answers(&a).len(), 2);
        assert_eq!(
            outcome(&zone, "mail.meridian.test.", RecordType::TXT),
            Outcome::NoData
        );
        // ANY: one RRset, A first.
        let any = outcome(&zone, "mail.meridian.test.", RecordType::ANY);
        assert_eq!(answers(&any)[0].record_type(), RecordType::A);
        // MX at the apex, with the in-zone exchange's addresses as glue.
        match outcome(&zone, "meridian.test.", RecordType::MX) {
            Outcome::Answer {
                answers,
                additionals,
            } => {
                assert_eq!(answers.len(), 2);
                assert_eq!(additionals.len(), 3, "{additionals:?}");
            }
            other => panic!("{other:?}"),
        }
        // Long TXT values become several strings.
        let text = outcome(&zone, "meridian.test.", RecordType::TXT);
        match &answers(&text)[0].data {
            RData::TXT(txt) => {
                assert_eq!(txt.txt_data.len(), 2);
                assert_eq!(txt.txt_data[0].len(), 255);
            }
            other => panic!("{other:?}"),
        }
        // The apex keeps its SOA.
        assert_eq!(
            answers(&outcome(&zone, "meridian.test.", RecordType::SOA))[0].record_type(),
            RecordType::SOA
        );
        // A steered name may carry TXT; its addresses stay steered.
        assert_eq!(
            answers(&outcome(&zone, "cdn.meridian.test.", RecordType::TXT)).len(),
            1
        );
        assert!(matches!(
            outcome(&zone, "cdn.meridian.test.", RecordType::A),
            Outcome::Steered { .. }
        ));
        // The empty non-terminal above a static name exists.
        assert_eq!(
            outcome(&zone, "deep.meridian.test.", RecordType::A),
            Outcome::NoData
        );
    }

    #[test]
    fn cnames_are_followed_inside_the_zone() {
        let zone = with_records(&records(
            "www CNAME cdn.meridian.test. \
             | alias CNAME www.meridian.test. \
             | mail A 192.0.2.25 \
             | smtp CNAME mail.meridian.test. \
             | gone CNAME nothing.meridian.test. \
             | out CNAME www.example.com.",
        ));
        // To a steered name: the CNAME, then the client's edges.
        let lookup = zone.lookup(&lower("www.meridian.test."), RecordType::A);
        assert_eq!(lookup.chain.len(), 1);
        assert!(matches!(lookup.outcome, Outcome::Steered { name: 0, .. }));
        // Two hops.
        let lookup = zone.lookup(&lower("alias.meridian.test."), RecordType::AAAA);
        assert_eq!(lookup.chain.len(), 2);
        assert_eq!(lookup.chain[1].name.to_ascii(), "www.meridian.test.");
        // To a static name; and NODATA there keeps the chain.
        let lookup = zone.lookup(&lower("smtp.meridian.test."), RecordType::A);
        assert_eq!(answers(&lookup.outcome).len(), 1);
        let lookup = zone.lookup(&lower("smtp.meridian.test."), RecordType::MX);
        assert_eq!((lookup.chain.len(), lookup.outcome), (1, Outcome::NoData));
        // To a name that does not exist: NXDOMAIN, with the CNAME (RFC 6604).
        let lookup = zone.lookup(&lower("gone.meridian.test."), RecordType::A);
        assert_eq!((lookup.chain.len(), lookup.outcome), (1, Outcome::NxDomain));
        // Out of the zone: just the CNAME.
        let lookup = zone.lookup(&lower("out.meridian.test."), RecordType::A);
        assert_eq!(
            (lookup.chain.len(), lookup.outcome),
            (1, Outcome::Elsewhere)
        );
        // Asking for the CNAME itself (or ANY) gets just it.
        for qtype in [RecordType::CNAME, RecordType::ANY] {
            let cname = outcome(&zone, "www.meridian.test.", qtype);
            assert_eq!(answers(&cname)[0].record_type(), RecordType::CNAME);
        }
    }
}
