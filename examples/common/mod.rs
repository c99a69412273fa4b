//! Shared by the classifier examples.

use earshot::classifier::{MEL_BANDS, PATCH_FRAMES};

/// A fixed pseudo-random `[96, 64]` log-mel patch (values in [−6, −2), xorshift64): model
/// timings do not depend on the values, and the same patch every run keeps runs comparable.
pub fn test_patch() -> Vec<f32> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..PATCH_FRAMES * MEL_BANDS)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            -6.0 + 4.0 * (seed >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}
