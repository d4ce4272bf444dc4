//! Inputs the fuzz targets found failing, kept so that they keep passing.
//! Add each new one with what it broke and what fixed it.

/// (what it broke, the input in hex).
pub const FOUND: &[(&str, &str)] = &[
    (
        // The question's name is a pointer to offset 2 (the header's
        // flags): "\000." in the query. The reply echoed the question byte
        // for byte, where offset 2 holds 0x81, not a label length: the
        // reply did not parse. Now FORMERR without a question.
        "a question compressed into the header's flags (UDP)",
        "b0a001000001000000000001c0020002000100045465537400001000010000290200000000000000",
    ),
    (
        // A pointer to offset 3: the root name in the query, a label in
        // the reply (whose RCODE is there): another question came back.
        "a question compressed into the header's RCODE (TCP)",
        "150101000001000000000001c0030005000100002904d0000000000000",
    ),
    (
        // A pointer to offset 5 (the question count's low byte).
        "a question compressed into the question count",
        "c6af01000001000000000000c005616c696173086d6572696469616e04746573740000050001",
    ),
    (
        // A pointer to offset 4 (the question count's high byte, 0: the
        // root) reads the same in the reply, but a header holds no names.
        "a question compressed into the question count's high byte",
        "ae9c00000001000000000001c004000500010000290200000000000000",
    ),
];
