//! The capture thread's promise (architecture: "the capture thread only copies samples into the
//! ring; it never allocates, locks, logs or blocks"): `CaptureWriter` downmixes and pushes
//! without allocating, both while a consumer drains the ring and when a live source overruns
//! it. A global allocator that counts allocations inside `assert_no_alloc` checks it (the count
//! is per thread, so the consumer thread may allocate freely).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};
use earshot::source::{ring, CaptureCounters};
use ringbuf::traits::Consumer;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn capture_writes_do_not_allocate_and_lose_nothing_while_drained() {
    let counters = Arc::new(CaptureCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    // A paced-by-consumer ring (files, pipes): the writer waits for room, never drops.
    let (mut writer, mut cons) = ring(8192, false, Arc::clone(&counters), Arc::clone(&stop));
    let frames = 48_000 * 10;
    // Stereo s16: left a ramp, right its negative plus 2, so the mono average is exactly 1/32768.
    let stereo: Vec<i16> = (0..frames)
        .flat_map(|i| {
            let l = (i % 20_000) as i16;
            [l, 2 - l]
        })
        .collect();
    let drained = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(frames);
        let mut buf = vec![0f32; 1000];
        while got.len() < frames {
            let n = cons.pop_slice(&mut buf);
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                std::thread::yield_now();
            }
        }
        got
    });
    reset_violation_count();
    assert_no_alloc(|| {
        // Odd sizes, as device periods and pipe reads come.
        for chunk in stereo.chunks(2 * 441) {
            assert!(writer.write_i16(chunk, 2));
        }
    });
    assert_eq!(violation_count(), 0, "allocations on the capture thread");
    let got = drained.join().unwrap();
    assert_eq!(got.len(), frames);
    assert!(got.iter().all(|&m| m == 1.0 / 32_768.0));
    assert_eq!(counters.frames_in.load(Ordering::Relaxed), frames as u64);
    assert_eq!(counters.overruns.load(Ordering::Relaxed), 0);
    assert!(counters.first_frame_time().is_some());
}

#[test]
fn a_live_overrun_drops_and_counts_without_allocating_or_waiting() {
    let counters = Arc::new(CaptureCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Live ring of 8192 frames that nobody drains.
    let (mut writer, _cons) = ring(8192, true, Arc::clone(&counters), stop);
    let period = vec![0.25f32; 480];
    reset_violation_count();
    assert_no_alloc(|| {
        for _ in 0..100 {
            assert!(writer.write_f32(&period, 1));
        }
    });
    assert_eq!(violation_count(), 0, "allocations on the capture thread");
    // 8192 fit; every later period is (partly) dropped and counted.
    assert_eq!(counters.frames_in.load(Ordering::Relaxed), 8192);
    assert_eq!(
        counters.overrun_frames.load(Ordering::Relaxed),
        100 * 480 - 8192
    );
    assert_eq!(counters.overruns.load(Ordering::Relaxed), 100 - 8192 / 480);
}

#[test]
fn the_guard_catches_an_allocation() {
    reset_violation_count();
    assert_no_alloc(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(violation_count() > 0, "the allocation guard does not work");
}
