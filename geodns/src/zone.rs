//! The zone GeoDNS is authoritative for, and what it holds at each name.
//!
//! Built once from the config: the apex SOA and NS records, glue for
//! in-zone nameservers, and for every steered name the A and AAAA records
//! of every region, prebuilt so answering a query is a lookup, not a build.
//! [`Zone::lookup`] says what a query gets (static records, a steered answer
//! that depends on the client, NODATA, NXDOMAIN, or REFUSED for names
//! outside the zone); it does no I/O and knows nothing about clients.

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// SOA timers for secondaries (Meridian has none, but the fields must be sane).
const SOA_REFRESH_SECONDS: i32 = 3600;
const SOA_RETRY_SECONDS: i32 = 600;
const SOA_EXPIRE_SECONDS: i32 = 604_800;

/// The authoritative data, ready to answer from.
#[derive(Debug)]
pub struct Zone {
    apex: LowerName,
    soa: Vec<Record>,
    /// The SOA as sent in the authority section of negative answers: its TTL
    /// is the negative-caching TTL (RFC 2308 §3).
    negative_soa: Vec<Record>,
    ns: Vec<Record>,
    /// Glue: A/AAAA records of in-zone nameservers.
    glue: HashMap<(LowerName, RecordType), Vec<Record>>,
    /// Every name that exists: names with records and the empty
    /// non-terminals between them and the apex.
    existing: HashSet<LowerName>,
    /// Steered name → its index in `steered_records`.
    steered: HashMap<LowerName, usize>,
    /// `[name][region]` → that region's edge records for that name.
    steered_records: Vec<Vec<RegionRecords>>,
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

/// What a query gets from the zone.
#[derive(Debug, PartialEq)]
pub enum Lookup<'z> {
    /// The name is not in this zone: refuse, never recurse.
    Refused,
    /// Records that do not depend on the client.
    Answer {
        /// The answer section.
        answers: &'z [Record],
        /// Glue for the additional section.
        additionals: Vec<&'z Record>,
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
}

/// A config value hickory cannot represent as a DNS name.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a usable DNS name: {reason}")]
pub struct ZoneError {
    name: String,
    reason: String,
}

fn name(text: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(text).map_err(|e| ZoneError {
        name: text.to_owned(),
        reason: e.to_string(),
    })
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

impl Zone {
    /// The zone described by a validated config.
    pub fn from_config(config: &config::Config) -> Result<Self, ZoneError> {
        let zone = &config.zone;
        let apex = name(&zone.name)?;
        let apex_lower = LowerName::new(&apex);

        let primary_ns = zone
            .nameservers
            .first()
            .map(|ns| name(&ns.name))
            .transpose()?
            .unwrap_or_else(|| apex.clone());
        let soa_data = SOA::new(
            primary_ns,
            name(&zone.hostmaster)?,
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

        let mut ns = Vec::new();
        let mut glue: HashMap<(LowerName, RecordType), Vec<Record>> = HashMap::new();
        for server in &zone.nameservers {
            let server_name = name(&server.name)?;
            ns.push(Record::from_rdata(
                apex.clone(),
                zone.ttl_seconds,
                RData::NS(NS(server_name.clone())),
            ));
            let lower = LowerName::new(&server_name);
            if apex_lower.zone_of(&lower) {
                add_existing(&lower);
                for ip in &server.addresses {
                    let record = address_record(&server_name, zone.ttl_seconds, *ip);
                    glue.entry((lower.clone(), record.record_type()))
                        .or_default()
                        .push(record);
                }
            }
        }

        let mut steered = HashMap::new();
        let mut steered_records = Vec::new();
        for (index, steered_name) in zone.steered_names.iter().enumerate() {
            let owner = name(steered_name)?;
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

        Ok(Zone {
            apex: apex_lower,
            soa,
            negative_soa,
            ns,
            glue,
            existing,
            steered,
            steered_records,
        })
    }

    /// The zone apex.
    pub fn apex(&self) -> &LowerName {
        &self.apex
    }

    /// The SOA for the authority section of NODATA and NXDOMAIN answers.
    pub fn negative_soa(&self) -> &[Record] {
        &self.negative_soa
    }

    /// What a query for `qname`/`qtype` gets.
    pub fn lookup(&self, qname: &LowerName, qtype: RecordType) -> Lookup<'_> {
        if !self.apex.zone_of(qname) {
            return Lookup::Refused;
        }
        if let Some(&index) = self.steered.get(qname) {
            return match qtype {
                RecordType::A | RecordType::AAAA => Lookup::Steered {
                    name: index,
                    record_type: qtype,
                },
                // RFC 8482: answer ANY with one RRset, not the whole node.
                RecordType::ANY => Lookup::Steered {
                    name: index,
                    record_type: RecordType::A,
                },
                _ => Lookup::NoData,
            };
        }
        if *qname == self.apex {
            let answers: &[Record] = match qtype {
                RecordType::SOA | RecordType::ANY => &self.soa,
                RecordType::NS => &self.ns,
                _ => return Lookup::NoData,
            };
            let additionals = if qtype == RecordType::NS {
                self.glue_for_ns()
            } else {
                Vec::new()
            };
            return Lookup::Answer {
                answers,
                additionals,
            };
        }
        let glue_type = if qtype == RecordType::ANY {
            RecordType::A
        } else {
            qtype
        };
        if let Some(records) = self.glue.get(&(qname.clone(), glue_type)) {
            return Lookup::Answer {
                answers: records,
                additionals: Vec::new(),
            };
        }
        if self.existing.contains(qname) {
            Lookup::NoData
        } else {
            Lookup::NxDomain
        }
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

    fn glue_for_ns(&self) -> Vec<&Record> {
        let mut additionals = Vec::new();
        for record in &self.ns {
            if let RData::NS(NS(target)) = &record.data {
                let target = LowerName::new(target);
                for record_type in [RecordType::A, RecordType::AAAA] {
                    if let Some(glue) = self.glue.get(&(target.clone(), record_type)) {
                        additionals.extend(glue.iter());
                    }
                }
            }
        }
        additionals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn demo() -> Zone {
        Zone::from_config(&config::Config::demo()).unwrap()
    }

    fn lower(name: &str) -> LowerName {
        LowerName::from_str(name).unwrap()
    }

    #[test]
    fn apex_has_soa_and_ns_with_glue() {
        let zone = demo();
        match zone.lookup(&lower("meridian.test."), RecordType::SOA) {
            Lookup::Answer { answers, .. } => {
                assert_eq!(answers.len(), 1);
                assert_eq!(answers[0].record_type(), RecordType::SOA);
            }
            other => panic!("{other:?}"),
        }
        match zone.lookup(&lower("meridian.test."), RecordType::NS) {
            Lookup::Answer {
                answers,
                additionals,
            } => {
                assert_eq!(answers.len(), 1);
                assert_eq!(additionals.len(), 1);
                assert_eq!(additionals[0].name.to_ascii(), "ns1.meridian.test.");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        let zone = demo();
        assert!(matches!(
            zone.lookup(&lower("CDN.Meridian.TEST."), RecordType::A),
            Lookup::Steered {
                name: 0,
                record_type: RecordType::A
            }
        ));
    }

    #[test]
    fn steered_name_answers_a_aaaa_and_any_as_one_rrset() {
        let zone = demo();
        let cdn = lower("cdn.meridian.test.");
        assert!(matches!(
            zone.lookup(&cdn, RecordType::AAAA),
            Lookup::Steered {
                record_type: RecordType::AAAA,
                ..
            }
        ));
        assert!(matches!(
            zone.lookup(&cdn, RecordType::ANY),
            Lookup::Steered {
                record_type: RecordType::A,
                ..
            }
        ));
        assert_eq!(zone.lookup(&cdn, RecordType::TXT), Lookup::NoData);
        let eu = zone.steered_records(0, 1, RecordType::A);
        assert_eq!(eu.len(), 1);
        assert_eq!(
            &eu[0].record.data,
            &RData::A(A("127.0.2.1".parse().unwrap()))
        );
        assert_eq!(eu[0].record.ttl, 30);
        assert_eq!(eu[0].edge, 0);
        assert!(zone.steered_records(0, 1, RecordType::AAAA).is_empty());
    }

    #[test]
    fn negative_answers() {
        let zone = demo();
        assert_eq!(
            zone.lookup(&lower("nosuch.meridian.test."), RecordType::A),
            Lookup::NxDomain
        );
        assert_eq!(
            zone.lookup(&lower("deep.cdn.meridian.test."), RecordType::A),
            Lookup::NxDomain
        );
        assert_eq!(
            zone.lookup(&lower("meridian.test."), RecordType::A),
            Lookup::NoData
        );
        assert_eq!(
            zone.lookup(&lower("ns1.meridian.test."), RecordType::MX),
            Lookup::NoData
        );
        assert_eq!(zone.negative_soa()[0].ttl, 60);
    }

    #[test]
    fn outside_the_zone_is_refused() {
        let zone = demo();
        assert_eq!(
            zone.lookup(&lower("example.com."), RecordType::A),
            Lookup::Refused
        );
        assert_eq!(
            zone.lookup(&lower("test."), RecordType::NS),
            Lookup::Refused
        );
        assert_eq!(
            zone.lookup(&lower("xmeridian.test."), RecordType::A),
            Lookup::Refused
        );
    }

    #[test]
    fn empty_non_terminals_exist() {
        let text =
            config::DEMO_TOML.replace("[\"cdn.meridian.test.\"]", "[\"a.b.meridian.test.\"]");
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let zone = Zone::from_config(&config).unwrap();
        assert_eq!(
            zone.lookup(&lower("b.meridian.test."), RecordType::A),
            Lookup::NoData
        );
    }
}
