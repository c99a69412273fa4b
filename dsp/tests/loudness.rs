//! The loudness meter against the EBU Tech 3341 minimum-requirements test cases 1–5 (as listed in
//! `shared/handbook/standards.md`): a stereo 1 kHz sine at 48 kHz, levels given as the sine's
//! peak amplitude in dBFS per channel.

use earshot_dsp::loudness::LoudnessMeter;

use std::f64::consts::PI;

const FS: u32 = 48_000;

/// Feeds a stereo 1 kHz sine made of (peak level dBFS, seconds) segments, with a continuous
/// phase across segments, in 100 ms pieces.
fn feed(meter: &mut LoudnessMeter, segments: &[(f64, f64)]) {
    let mut n: u64 = 0;
    let mut buf = vec![0.0f32; 2 * FS as usize / 10];
    for &(level_dbfs, seconds) in segments {
        let amplitude = 10f64.powf(level_dbfs / 20.0);
        let mut left = (seconds * f64::from(FS)).round() as usize;
        while left > 0 {
            let frames = left.min(buf.len() / 2);
            for frame in buf[..2 * frames].chunks_exact_mut(2) {
                let v = (amplitude * (2.0 * PI * 1000.0 * n as f64 / f64::from(FS)).sin()) as f32;
                frame[0] = v;
                frame[1] = v;
                n += 1;
            }
            meter.process_interleaved_f32(&buf[..2 * frames]).unwrap();
            left -= frames;
        }
    }
}

fn assert_lufs(what: &str, value: Option<f64>, expected: f64) {
    let v = value.unwrap_or_else(|| panic!("{what}: undefined"));
    assert!(
        (v - expected).abs() <= 0.1,
        "{what}: {v:.3} LUFS, expected {expected} ± 0.1"
    );
}

#[test]
fn tech3341_case1_minus_23_dbfs_reads_minus_23_lufs() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(&mut m, &[(-23.0, 20.0)]);
    assert_lufs("case 1 M", m.momentary_lufs(), -23.0);
    assert_lufs("case 1 S", m.short_term_lufs(), -23.0);
    assert_lufs("case 1 I", m.integrated_lufs(), -23.0);
}

#[test]
fn tech3341_case2_minus_33_dbfs_reads_minus_33_lufs() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(&mut m, &[(-33.0, 20.0)]);
    assert_lufs("case 2 M", m.momentary_lufs(), -33.0);
    assert_lufs("case 2 S", m.short_term_lufs(), -33.0);
    assert_lufs("case 2 I", m.integrated_lufs(), -33.0);
}

#[test]
fn tech3341_case3_relative_gate() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(&mut m, &[(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)]);
    assert_lufs("case 3 I", m.integrated_lufs(), -23.0);
}

#[test]
fn tech3341_case4_absolute_and_relative_gate() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(
        &mut m,
        &[
            (-72.0, 10.0),
            (-36.0, 10.0),
            (-23.0, 60.0),
            (-36.0, 10.0),
            (-72.0, 10.0),
        ],
    );
    assert_lufs("case 4 I", m.integrated_lufs(), -23.0);
}

#[test]
fn tech3341_case5_energy_mean_of_gated_blocks() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(&mut m, &[(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)]);
    assert_lufs("case 5 I", m.integrated_lufs(), -23.0);
}

#[test]
fn reset_forgets_the_programme() {
    let mut m = LoudnessMeter::new(2, FS).unwrap();
    feed(&mut m, &[(-23.0, 5.0)]);
    assert!(m.integrated_lufs().is_some());
    m.reset();
    assert_eq!(m.integrated_lufs(), None);
    assert_eq!(m.momentary_lufs(), None);
    feed(&mut m, &[(-33.0, 5.0)]);
    assert_lufs("after reset I", m.integrated_lufs(), -33.0);
    assert_lufs("after reset S", m.short_term_lufs(), -33.0);
}
