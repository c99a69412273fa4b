//! The dsp crate's promise: processors allocate at construction only, never while they run
//! (they sit on the real-time audio path). A global allocator that counts allocations made
//! inside `assert_no_alloc` checks it on ten seconds of 48 kHz input through every stage.

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};
use earshot_dsp::background::{BackgroundConfig, BackgroundTracker};
use earshot_dsp::level::LevelMeter;
use earshot_dsp::logmel::{LogMelConfig, LogMelFrontEnd};
use earshot_dsp::loudness::LoudnessMeter;
use earshot_dsp::resample::StreamResampler;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn processors_do_not_allocate_after_construction() {
    let rate = 48_000;
    let input: Vec<f32> = (0..rate * 10)
        .map(|i| (i as f32 * 0.013).sin() * 0.3 + (i as f32 * 0.37).sin() * 0.1)
        .collect();
    let mut level = LevelMeter::new(rate as u32, 480).unwrap();
    let mut loudness = LoudnessMeter::new(1, rate as u32).unwrap();
    let mut resampler = StreamResampler::new(rate as u32, 16_000).unwrap();
    let mut frontend = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
    let mut background = BackgroundTracker::new(BackgroundConfig::default()).unwrap();
    let (mut blocks, mut patches) = (0, 0);

    reset_violation_count();
    assert_no_alloc(|| {
        // Odd slice sizes, as a capture ring hands them over.
        for chunk in input.chunks(437) {
            level.process(chunk, |b| {
                blocks += 1;
                background.push(b.laeq_db());
            });
            loudness.process_interleaved_f32(chunk).unwrap();
            resampler.push(chunk, |s| frontend.push(s, |_| patches += 1));
        }
        resampler.finish(|s| frontend.push(s, |_| patches += 1));
        frontend.finish(|_| patches += 1);
        let _ = (loudness.momentary_lufs(), loudness.integrated_lufs());
        let _ = background.estimate_dbfs();
    });
    assert_eq!(violation_count(), 0, "allocations on the audio path");
    assert_eq!(blocks, 1000);
    // 10 s: 1 + ceil((160000 − 15600) / 7680) = 20 patches.
    assert_eq!(patches, 20);
}

#[test]
fn the_guard_catches_an_allocation() {
    reset_violation_count();
    assert_no_alloc(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(violation_count() > 0, "the allocation guard does not work");
}
