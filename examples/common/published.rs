//! Shared by the `trace` example and the policy lab (`lab/policy_lab`); not an
//! example itself.

/// libCacheSim's published miss counts on `cloudPhysicsIO.oracleGeneral.bin`
/// (`test/test_evictionAlgo.c`, copied in ../shared/traces/README.md), and the
/// newer S3-FIFO row quoted in issue 11.
pub(crate) const PUBLISHED_CLOUDPHYSICS: &[(&str, [u64; 8])] = &[
    (
        "LRU",
        [93374, 89783, 83572, 81722, 72494, 72104, 71972, 71704],
    ),
    (
        "ARC",
        [90252, 85861, 78168, 74297, 67381, 65685, 64439, 64772],
    ),
    (
        "S3-FIFO (README)",
        [89307, 82387, 77041, 76791, 71300, 70343, 70455, 70355],
    ),
    (
        "S3-FIFO (newer)",
        [90117, 80915, 75060, 72191, 69815, 65542, 60799, 56045],
    ),
    (
        "LIRS",
        [89819, 79237, 73143, 70363, 68405, 64494, 58640, 53924],
    ),
    (
        "Belady",
        [79256, 70724, 65481, 61594, 59645, 57599, 50873, 48974],
    ),
];
