//! The countries: every ISO 3166-1 alpha-2 code (the codes
//! `geodns.overrides.countries` accepts) with a representative point, and
//! the continent codes. One table, for the config's checks and GeoDNS's
//! placement alike.
//!
//! Why this module exists: a GeoIP2 *Country* database (such as the vendored
//! `data/GeoIP2-Country-iptoasn.mmdb`, or MaxMind's GeoLite2-Country) maps an
//! address only to an ISO 3166-1 alpha-2 code — it carries no latitude or
//! longitude. To steer a client to the nearest region, Meridian places the
//! client at its country's representative point from this table and computes
//! great-circle distances from there to each region's coordinates.
//!
//! The table covers all 249 officially assigned ISO 3166-1 alpha-2 codes plus
//! the user-assigned `XK` (Kosovo), which GeoIP databases use. Coordinates are
//! WGS84 decimal degrees, north and east positive, rounded to about 0.1°; they
//! were compiled by hand from well-known geographic-centre figures and are
//! meant to be accurate to roughly one degree, which is ample for picking the
//! nearest datacenter.
//!
//! Convention:
//! - By default a code's point is the geographic centre of its *main*
//!   territory: the mainland or metropolitan area, ignoring overseas
//!   departments, dependencies with their own code (e.g. FR excludes GF, RE,
//!   PF; DK excludes GL, FO; NO excludes SJ; US excludes PR, GU, VI, UM) and
//!   remote islands (e.g. ES excludes the Canaries, PT the Azores and Madeira,
//!   EC the Galápagos, CL Easter Island). The US point is the centre of the
//!   contiguous states (39.8, -98.6).
//! - Where that centre would be a poor proxy for where clients actually are —
//!   countries whose population is concentrated far from the geometric
//!   centre (RU, CA, NO, GL, MY) or that are scattered over an ocean (KI, PF,
//!   UM, SH, ...) — the point is near the main population centre instead, and
//!   the entry's comment says so.
//! - Uninhabited or barely inhabited territories (AQ, BV, HM, GS, TF) use
//!   their geographic centre or main island; AQ is the South Pole, which is
//!   equally far from every longitude.

/// The continent codes of GeoIP2 databases.
pub const CONTINENT_CODES: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Whether `code` is a country code in the table (exactly two letters,
/// any case).
pub fn is_country_code(code: &str) -> bool {
    country_centroid(code).is_some()
}

/// A point on the globe in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    /// Latitude in decimal degrees, north positive, in `[-90, 90]`.
    pub latitude: f64,
    /// Longitude in decimal degrees, east positive, in `[-180, 180]`.
    pub longitude: f64,
}

/// The representative point of the country with this ISO 3166-1 alpha-2 code, matched case-insensitively.
///
/// Returns `None` unless `iso_code` is exactly two ASCII letters naming a code
/// in the table (all officially assigned ISO 3166-1 alpha-2 codes plus `XK`).
pub fn country_centroid(iso_code: &str) -> Option<Coordinates> {
    country_index(iso_code).map(|index| {
        let (_, latitude, longitude) = CENTROIDS[index];
        Coordinates {
            latitude,
            longitude,
        }
    })
}

/// How many codes the table holds: a country's [`country_index`] is below it.
pub fn country_count() -> usize {
    CENTROIDS.len()
}

/// The position of `iso_code` (matched case-insensitively) in the table,
/// stable for a build of Meridian: a small dense number, so counters per
/// country can be an array instead of a map keyed by strings.
pub fn country_index(iso_code: &str) -> Option<usize> {
    let &[a, b] = iso_code.as_bytes() else {
        return None;
    };
    if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
        return None;
    }
    let key = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    CENTROIDS
        .binary_search_by(|&(code, _, _)| code.as_bytes().cmp(&key[..]))
        .ok()
}

/// The uppercase code at `index` of the table ([`country_index`]).
pub fn country_code(index: usize) -> Option<&'static str> {
    CENTROIDS.get(index).map(|&(code, _, _)| code)
}

/// `(uppercase ISO 3166-1 alpha-2 code, latitude, longitude)`, sorted by code
/// so that [`country_centroid`] can binary-search it.
static CENTROIDS: &[(&str, f64, f64)] = &[
    ("AD", 42.5, 1.5),       // Andorra
    ("AE", 24.0, 54.0),      // United Arab Emirates
    ("AF", 33.9, 67.7),      // Afghanistan
    ("AG", 17.1, -61.8),     // Antigua and Barbuda
    ("AI", 18.2, -63.1),     // Anguilla
    ("AL", 41.1, 20.2),      // Albania
    ("AM", 40.1, 45.0),      // Armenia
    ("AO", -11.2, 17.9),     // Angola
    ("AQ", -90.0, 0.0),      // Antarctica (South Pole)
    ("AR", -34.5, -64.5),    // Argentina (mainland)
    ("AS", -14.3, -170.7),   // American Samoa (Tutuila)
    ("AT", 47.6, 14.0),      // Austria
    ("AU", -25.3, 133.8),    // Australia (mainland)
    ("AW", 12.5, -70.0),     // Aruba
    ("AX", 60.2, 20.0),      // Åland Islands
    ("AZ", 40.3, 47.6),      // Azerbaijan
    ("BA", 44.0, 17.8),      // Bosnia and Herzegovina
    ("BB", 13.2, -59.5),     // Barbados
    ("BD", 23.7, 90.4),      // Bangladesh
    ("BE", 50.6, 4.6),       // Belgium
    ("BF", 12.2, -1.6),      // Burkina Faso
    ("BG", 42.7, 25.5),      // Bulgaria
    ("BH", 26.0, 50.55),     // Bahrain
    ("BI", -3.4, 29.9),      // Burundi
    ("BJ", 9.3, 2.3),        // Benin
    ("BL", 17.9, -62.8),     // Saint Barthélemy
    ("BM", 32.3, -64.8),     // Bermuda
    ("BN", 4.5, 114.7),      // Brunei Darussalam
    ("BO", -16.3, -63.6),    // Bolivia
    ("BQ", 12.2, -68.3),     // Bonaire, Sint Eustatius and Saba (Bonaire)
    ("BR", -10.6, -52.9),    // Brazil
    ("BS", 25.0, -77.4),     // Bahamas (New Providence, most of the population)
    ("BT", 27.5, 90.4),      // Bhutan
    ("BV", -54.4, 3.4),      // Bouvet Island
    ("BW", -22.3, 24.7),     // Botswana
    ("BY", 53.7, 28.0),      // Belarus
    ("BZ", 17.2, -88.7),     // Belize
    ("CA", 48.0, -85.0),     // Canada (near the population centre, northern Ontario)
    ("CC", -12.2, 96.9),     // Cocos (Keeling) Islands
    ("CD", -2.9, 23.7),      // Congo, Democratic Republic of the
    ("CF", 6.6, 20.9),       // Central African Republic
    ("CG", -0.7, 15.2),      // Congo
    ("CH", 46.8, 8.2),       // Switzerland
    ("CI", 7.5, -5.5),       // Côte d'Ivoire
    ("CK", -21.2, -159.8),   // Cook Islands (Rarotonga)
    ("CL", -35.0, -71.3),    // Chile (mainland)
    ("CM", 6.0, 12.5),       // Cameroon
    ("CN", 35.9, 104.2),     // China
    ("CO", 4.6, -74.3),      // Colombia
    ("CR", 9.75, -84.0),     // Costa Rica
    ("CU", 21.6, -79.0),     // Cuba
    ("CV", 16.0, -24.0),     // Cabo Verde
    ("CW", 12.2, -69.0),     // Curaçao
    ("CX", -10.5, 105.6),    // Christmas Island
    ("CY", 35.0, 33.2),      // Cyprus
    ("CZ", 49.8, 15.5),      // Czechia
    ("DE", 51.2, 10.4),      // Germany
    ("DJ", 11.8, 42.6),      // Djibouti
    ("DK", 56.0, 10.0),      // Denmark (excluding Greenland and the Faroes)
    ("DM", 15.4, -61.35),    // Dominica
    ("DO", 18.9, -70.4),     // Dominican Republic
    ("DZ", 28.0, 2.6),       // Algeria
    ("EC", -1.6, -78.5),     // Ecuador (mainland)
    ("EE", 58.6, 25.0),      // Estonia
    ("EG", 26.8, 30.8),      // Egypt
    ("EH", 24.2, -12.9),     // Western Sahara
    ("ER", 15.2, 39.8),      // Eritrea
    ("ES", 40.2, -3.7),      // Spain (mainland)
    ("ET", 8.6, 39.6),       // Ethiopia
    ("FI", 64.0, 26.0),      // Finland
    ("FJ", -17.8, 178.0),    // Fiji (Viti Levu)
    ("FK", -51.8, -59.5),    // Falkland Islands (Malvinas)
    ("FM", 6.9, 158.2),      // Micronesia, Federated States of (Pohnpei, the capital)
    ("FO", 62.0, -6.9),      // Faroe Islands
    ("FR", 46.6, 2.5),       // France (metropolitan)
    ("GA", -0.8, 11.6),      // Gabon
    ("GB", 54.0, -2.0),      // United Kingdom
    ("GD", 12.1, -61.7),     // Grenada
    ("GE", 42.3, 43.4),      // Georgia
    ("GF", 4.0, -53.0),      // French Guiana
    ("GG", 49.45, -2.6),     // Guernsey
    ("GH", 7.9, -1.0),       // Ghana
    ("GI", 36.14, -5.35),    // Gibraltar
    ("GL", 64.2, -51.7),     // Greenland (Nuuk, on the populated south-west coast)
    ("GM", 13.45, -15.3),    // Gambia
    ("GN", 9.9, -9.7),       // Guinea
    ("GP", 16.25, -61.55),   // Guadeloupe
    ("GQ", 1.6, 10.3),       // Equatorial Guinea (mainland Río Muni)
    ("GR", 39.1, 22.0),      // Greece
    ("GS", -54.4, -36.6),    // South Georgia and the South Sandwich Islands
    ("GT", 15.7, -90.2),     // Guatemala
    ("GU", 13.45, 144.8),    // Guam
    ("GW", 12.0, -15.0),     // Guinea-Bissau
    ("GY", 4.9, -58.9),      // Guyana
    ("HK", 22.35, 114.15),   // Hong Kong
    ("HM", -53.1, 73.5),     // Heard Island and McDonald Islands
    ("HN", 14.8, -86.6),     // Honduras
    ("HR", 45.1, 15.2),      // Croatia
    ("HT", 19.0, -72.3),     // Haiti
    ("HU", 47.2, 19.5),      // Hungary
    ("ID", -2.5, 118.0),     // Indonesia
    ("IE", 53.2, -8.0),      // Ireland
    ("IL", 31.0, 34.9),      // Israel
    ("IM", 54.25, -4.55),    // Isle of Man
    ("IN", 22.0, 79.0),      // India
    ("IO", -7.3, 72.4),      // British Indian Ocean Territory (Diego Garcia)
    ("IQ", 33.2, 43.7),      // Iraq
    ("IR", 32.4, 53.7),      // Iran
    ("IS", 65.0, -19.0),     // Iceland
    ("IT", 42.8, 12.6),      // Italy
    ("JE", 49.2, -2.1),      // Jersey
    ("JM", 18.1, -77.3),     // Jamaica
    ("JO", 30.6, 36.2),      // Jordan
    ("JP", 36.0, 138.0),     // Japan
    ("KE", 0.2, 37.9),       // Kenya
    ("KG", 41.2, 74.8),      // Kyrgyzstan
    ("KH", 12.5, 105.0),     // Cambodia
    ("KI", 1.4, 173.0),      // Kiribati (Tarawa, where most of the population lives)
    ("KM", -11.9, 43.9),     // Comoros
    ("KN", 17.3, -62.75),    // Saint Kitts and Nevis
    ("KP", 40.3, 127.5),     // Korea, Democratic People's Republic of
    ("KR", 36.5, 127.8),     // Korea, Republic of
    ("KW", 29.3, 47.5),      // Kuwait
    ("KY", 19.3, -81.25),    // Cayman Islands
    ("KZ", 48.0, 67.0),      // Kazakhstan
    ("LA", 18.5, 103.5),     // Lao People's Democratic Republic
    ("LB", 33.9, 35.9),      // Lebanon
    ("LC", 13.9, -61.0),     // Saint Lucia
    ("LI", 47.15, 9.55),     // Liechtenstein
    ("LK", 7.9, 80.8),       // Sri Lanka
    ("LR", 6.4, -9.4),       // Liberia
    ("LS", -29.6, 28.2),     // Lesotho
    ("LT", 55.2, 23.9),      // Lithuania
    ("LU", 49.8, 6.1),       // Luxembourg
    ("LV", 56.9, 24.6),      // Latvia
    ("LY", 26.3, 17.2),      // Libya
    ("MA", 31.8, -7.1),      // Morocco (excluding Western Sahara)
    ("MC", 43.74, 7.42),     // Monaco
    ("MD", 47.4, 28.4),      // Moldova
    ("ME", 42.7, 19.4),      // Montenegro
    ("MF", 18.07, -63.05),   // Saint Martin (French part)
    ("MG", -18.8, 46.9),     // Madagascar
    ("MH", 7.1, 171.2),      // Marshall Islands (Majuro)
    ("MK", 41.6, 21.7),      // North Macedonia
    ("ML", 17.6, -4.0),      // Mali
    ("MM", 21.0, 96.0),      // Myanmar
    ("MN", 46.9, 103.8),     // Mongolia
    ("MO", 22.17, 113.55),   // Macao
    ("MP", 15.2, 145.75),    // Northern Mariana Islands (Saipan)
    ("MQ", 14.65, -61.0),    // Martinique
    ("MR", 20.3, -10.3),     // Mauritania
    ("MS", 16.75, -62.2),    // Montserrat
    ("MT", 35.9, 14.4),      // Malta
    ("MU", -20.3, 57.6),     // Mauritius (main island)
    ("MV", 3.2, 73.2),       // Maldives
    ("MW", -13.3, 34.3),     // Malawi
    ("MX", 23.6, -102.5),    // Mexico
    ("MY", 3.8, 102.0),      // Malaysia (Peninsular Malaysia, most of the population)
    ("MZ", -18.7, 35.5),     // Mozambique
    ("NA", -22.6, 17.1),     // Namibia
    ("NC", -21.3, 165.6),    // New Caledonia
    ("NE", 17.6, 8.1),       // Niger
    ("NF", -29.05, 167.95),  // Norfolk Island
    ("NG", 9.1, 8.7),        // Nigeria
    ("NI", 12.9, -85.2),     // Nicaragua
    ("NL", 52.2, 5.5),       // Netherlands (European part)
    ("NO", 61.5, 9.5),       // Norway (mainland; southern Norway, most of the population)
    ("NP", 28.4, 84.1),      // Nepal
    ("NR", -0.53, 166.93),   // Nauru
    ("NU", -19.05, -169.87), // Niue
    ("NZ", -41.0, 174.0),    // New Zealand
    ("OM", 21.5, 55.9),      // Oman
    ("PA", 8.5, -80.5),      // Panama
    ("PE", -9.2, -75.0),     // Peru
    ("PF", -17.65, -149.45), // French Polynesia (Tahiti, most of the population)
    ("PG", -6.3, 144.0),     // Papua New Guinea
    ("PH", 12.9, 121.8),     // Philippines
    ("PK", 30.4, 69.3),      // Pakistan
    ("PL", 52.0, 19.1),      // Poland
    ("PM", 46.9, -56.3),     // Saint Pierre and Miquelon
    ("PN", -25.07, -130.1),  // Pitcairn (Adamstown)
    ("PR", 18.2, -66.5),     // Puerto Rico
    ("PS", 31.9, 35.2),      // Palestine, State of
    ("PT", 39.6, -8.0),      // Portugal (mainland)
    ("PW", 7.5, 134.6),      // Palau
    ("PY", -23.4, -58.4),    // Paraguay
    ("QA", 25.35, 51.2),     // Qatar
    ("RE", -21.1, 55.5),     // Réunion
    ("RO", 45.9, 25.0),      // Romania
    ("RS", 44.0, 20.9),      // Serbia (excluding Kosovo)
    ("RU", 55.8, 49.0),      // Russian Federation (European Russia near Kazan, the population mass)
    ("RW", -1.9, 29.9),      // Rwanda
    ("SA", 23.9, 45.1),      // Saudi Arabia
    ("SB", -9.6, 160.2),     // Solomon Islands
    ("SC", -4.7, 55.5),      // Seychelles (Mahé)
    ("SD", 15.6, 30.0),      // Sudan (since 2011, without South Sudan)
    ("SE", 62.0, 15.5),      // Sweden
    ("SG", 1.35, 103.8),     // Singapore
    ("SH", -15.95, -5.7),    // Saint Helena, Ascension and Tristan da Cunha (Saint Helena)
    ("SI", 46.1, 14.9),      // Slovenia
    ("SJ", 78.2, 15.6),      // Svalbard and Jan Mayen (Longyearbyen)
    ("SK", 48.7, 19.7),      // Slovakia
    ("SL", 8.5, -11.8),      // Sierra Leone
    ("SM", 43.94, 12.46),    // San Marino
    ("SN", 14.5, -14.5),     // Senegal
    ("SO", 5.2, 46.2),       // Somalia
    ("SR", 4.0, -56.0),      // Suriname
    ("SS", 7.5, 30.5),       // South Sudan
    ("ST", 0.2, 6.6),        // Sao Tome and Principe
    ("SV", 13.8, -88.9),     // El Salvador
    ("SX", 18.04, -63.06),   // Sint Maarten (Dutch part)
    ("SY", 34.8, 39.0),      // Syrian Arab Republic
    ("SZ", -26.5, 31.5),     // Eswatini
    ("TC", 21.7, -71.8),     // Turks and Caicos Islands
    ("TD", 15.5, 18.7),      // Chad
    ("TF", -49.3, 69.5),     // French Southern Territories (Kerguelen)
    ("TG", 8.6, 0.8),        // Togo
    ("TH", 15.0, 101.0),     // Thailand
    ("TJ", 38.9, 71.3),      // Tajikistan
    ("TK", -9.2, -171.85),   // Tokelau
    ("TL", -8.8, 125.7),     // Timor-Leste
    ("TM", 39.0, 59.6),      // Turkmenistan
    ("TN", 34.0, 9.5),       // Tunisia
    ("TO", -21.2, -175.2),   // Tonga (Tongatapu)
    ("TR", 39.0, 35.2),      // Türkiye
    ("TT", 10.7, -61.2),     // Trinidad and Tobago
    ("TV", -8.5, 179.2),     // Tuvalu (Funafuti)
    ("TW", 23.7, 121.0),     // Taiwan
    ("TZ", -6.4, 34.9),      // Tanzania
    ("UA", 49.0, 31.2),      // Ukraine
    ("UG", 1.4, 32.3),       // Uganda
    ("UM", 19.3, 166.6),     // United States Minor Outlying Islands (Wake Island)
    ("US", 39.8, -98.6),     // United States (contiguous states)
    ("UY", -32.5, -55.8),    // Uruguay
    ("UZ", 41.4, 64.6),      // Uzbekistan
    ("VA", 41.9, 12.45),     // Holy See (Vatican City)
    ("VC", 13.25, -61.2),    // Saint Vincent and the Grenadines
    ("VE", 7.0, -66.0),      // Venezuela
    ("VG", 18.43, -64.62),   // Virgin Islands (British)
    ("VI", 18.34, -64.9),    // Virgin Islands (U.S.)
    ("VN", 16.0, 107.0),     // Viet Nam
    ("VU", -16.0, 167.0),    // Vanuatu
    ("WF", -13.77, -177.16), // Wallis and Futuna (Wallis)
    ("WS", -13.75, -172.1),  // Samoa
    ("XK", 42.6, 20.9),      // Kosovo (user-assigned code used by GeoIP databases)
    ("YE", 15.6, 48.5),      // Yemen
    ("YT", -12.8, 45.15),    // Mayotte
    ("ZA", -29.0, 24.0),     // South Africa
    ("ZM", -13.1, 27.8),     // Zambia
    ("ZW", -19.0, 29.2),     // Zimbabwe
];

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_near(code: &str, latitude: f64, longitude: f64, tolerance: f64) {
        let c = country_centroid(code).expect("code should be in the table");
        assert!(
            (c.latitude - latitude).abs() <= tolerance
                && (c.longitude - longitude).abs() <= tolerance,
            "{code}: got {c:?}, expected within {tolerance}° of ({latitude}, {longitude})"
        );
    }

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in CENTROIDS.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "table not strictly sorted at {} / {}",
                pair[0].0,
                pair[1].0
            );
        }
    }

    #[test]
    fn table_has_every_code_and_valid_coordinates() {
        assert_eq!(CENTROIDS.len(), 250, "249 ISO 3166-1 codes plus XK");
        for &(code, latitude, longitude) in CENTROIDS {
            assert!(
                code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()),
                "bad code {code:?}"
            );
            assert!((-90.0..=90.0).contains(&latitude), "{code}: {latitude}");
            assert!((-180.0..=180.0).contains(&longitude), "{code}: {longitude}");
            // Every entry must be reachable through the public lookup.
            assert_eq!(
                country_centroid(code),
                Some(Coordinates {
                    latitude,
                    longitude
                })
            );
        }
        for code in [
            "AQ", "BV", "HM", "TF", "UM", "GS", "IO", "PN", "SJ", "AX", "BQ", "CW", "SX", "SS",
            "XK",
        ] {
            assert!(country_centroid(code).is_some(), "missing {code}");
        }
    }

    #[test]
    fn spot_checks() {
        assert_near("GB", 54.0, -2.0, 1.0);
        assert_near("US", 39.0, -98.0, 1.5);
        assert_near("SG", 1.35, 103.8, 0.2);
        assert_near("AU", -25.0, 134.0, 1.5);
        assert_near("BR", -10.0, -52.0, 2.0);
        assert_near("JP", 36.0, 138.0, 1.5);
        assert_near("ZA", -29.0, 24.0, 1.5);
        assert_near("DE", 51.0, 10.0, 1.0);
    }

    #[test]
    fn indices_name_codes_both_ways() {
        for index in 0..country_count() {
            let code = country_code(index).unwrap();
            assert_eq!(country_index(code), Some(index));
            assert_eq!(country_index(&code.to_ascii_lowercase()), Some(index));
        }
        assert_eq!(country_code(country_count()), None);
        assert_eq!(country_index("ZZ"), None);
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(country_centroid("gb"), country_centroid("GB"));
        assert_eq!(country_centroid("Gb"), country_centroid("GB"));
        assert!(country_centroid("gb").is_some());
    }

    #[test]
    fn rejects_malformed_and_unknown_codes() {
        for input in ["", "G", "GBR", "1A", "A1", "ZZ", "G ", "É", "gb\n"] {
            assert_eq!(country_centroid(input), None, "{input:?}");
        }
    }
}
