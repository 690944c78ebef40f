//! Seeds: every stream of randomness a machine uses is derived from the one
//! run seed ([`super::SimConfig::seed`]), one sub-seed per subsystem, so a new
//! draw in one stream does not reshuffle another.

/// The fault stream's seed for a run seed: the coin flips of
/// [`super::faults::Trigger`]s and the sizes of short and torn writes.
pub(super) fn fault_seed(seed: u64) -> u64 {
    mix(seed, 1, 0)
}

/// The crash-outcome stream's seed for a run seed.
pub(super) fn crash_seed(seed: u64) -> u64 {
    mix(seed, 2, 0)
}

/// SplitMix64-style mixing of three words into one seed.
pub(super) fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
