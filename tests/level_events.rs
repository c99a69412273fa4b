//! Acceptance tests of the level-based events (`earshot::level_events`): adaptive and absolute
//! loud noise, the background estimate after a loud event, audio input loss, and SPL summaries.
//! Every signal is generated here; levels are dBFS, RMS-referenced (a full-scale sine is
//! −3.01 dBFS, `shared/handbook/standards.md`).

use earshot::level_events::{
    AbsoluteLoudness, AdaptiveLoudness, InputFault, LevelEvent, LevelEvents, LevelEventsConfig,
    LoudnessMode,
};
use earshot_dsp::level::Calibration;

const RATE: u32 = 48_000;
const FS: f64 = RATE as f64;

/// Deterministic white noise (xorshift32, uniform) with an RMS level of `rms_dbfs`.
struct Noise(u32);

impl Noise {
    fn samples(&mut self, secs: f64, rms_dbfs: f64) -> Vec<f32> {
        let peak = 10f64.powf(rms_dbfs / 20.0) * 3f64.sqrt();
        (0..(secs * FS).round() as usize)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 17;
                self.0 ^= self.0 << 5;
                let u = f64::from(self.0) / f64::from(u32::MAX) * 2.0 - 1.0;
                (u * peak) as f32
            })
            .collect()
    }
}

/// A 1 kHz sine of the given LAeq (dBFS; A-weighting is 0 dB at 1 kHz).
fn tone(secs: f64, laeq_dbfs: f64) -> Vec<f32> {
    let amplitude = 10f64.powf((laeq_dbfs + 3.0103) / 20.0);
    (0..(secs * FS).round() as usize)
        .map(|n| (amplitude * (std::f64::consts::TAU * 1000.0 * n as f64 / FS).sin()) as f32)
        .collect()
}

fn seconds(s: f64) -> u64 {
    (s * FS).round() as u64
}

/// Events of one stream, with the number of samples pushed when each was emitted.
#[derive(Default)]
struct Run {
    events: Vec<(u64, LevelEvent)>,
}

impl Run {
    /// Pushes `signal` in chunks of 1 000 samples (not a multiple of the 480-sample block).
    fn push(&mut self, ev: &mut LevelEvents, signal: &[f32]) {
        for chunk in signal.chunks(1_000) {
            let at = ev.samples_in() + chunk.len() as u64;
            ev.push(chunk, &mut |e| self.events.push((at, e)));
        }
    }

    fn finish(&mut self, ev: &mut LevelEvents) {
        let at = ev.samples_in();
        ev.finish(&mut |e| self.events.push((at, e)));
    }

    fn loud(&self, want: LoudnessMode) -> Vec<&LevelEvent> {
        self.events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| {
                matches!(e, LevelEvent::LoudNoiseStart { mode, .. }
                    | LevelEvent::LoudNoiseStop { mode, .. } if *mode == want)
            })
            .collect()
    }

    fn input(&self) -> Vec<&LevelEvent> {
        self.events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| {
                matches!(
                    e,
                    LevelEvent::AudioInputLost { .. } | LevelEvent::AudioInputRestored { .. }
                )
            })
            .collect()
    }
}

fn adaptive_only() -> LevelEvents {
    LevelEvents::new(
        RATE,
        LevelEventsConfig {
            loud_noise_adaptive: Some(AdaptiveLoudness::default()),
            ..LevelEventsConfig::default()
        },
    )
    .unwrap()
}

/// Acceptance 1: after 60 s of background at −50 dBFS, a +15 dB step starts an adaptive loud
/// noise within 0.5 s; a +3 dB step raises nothing.
#[test]
fn adaptive_loud_noise_starts_within_half_a_second_of_a_15_db_step_and_not_for_3_db() {
    let mut noise = Noise(0x1234_5678);
    let background = noise.samples(60.0, -50.0);

    let mut ev = adaptive_only();
    let mut run = Run::default();
    run.push(&mut ev, &background);
    assert!(
        run.loud(LoudnessMode::Adaptive).is_empty(),
        "during the background"
    );
    let bg = ev.background_dbfs().expect("background learned");
    run.push(&mut ev, &noise.samples(5.0, -35.0));
    let loud = run.loud(LoudnessMode::Adaptive);
    assert_eq!(loud.len(), 1, "{loud:?}");
    let LevelEvent::LoudNoiseStart {
        start_sample,
        time_s,
        threshold_dbfs,
        background_dbfs,
        ..
    } = *loud[0]
    else {
        panic!("{loud:?}")
    };
    let step = seconds(60.0);
    assert!(
        (step..=step + seconds(0.5)).contains(&start_sample),
        "start at sample {start_sample} ({time_s} s), step at {step}"
    );
    assert!((60.0..=60.5).contains(&time_s), "{time_s}");
    assert_eq!(background_dbfs, Some(bg));
    assert_eq!(threshold_dbfs, bg + 12.0);
    // Emitted once min_duration (0.2 s) had passed, not later than 0.5 s after the step.
    let emitted_at = run.events.iter().find(|(_, e)| e == loud[0]).unwrap().0;
    assert!(emitted_at <= step + seconds(0.5), "emitted at {emitted_at}");

    let mut ev = adaptive_only();
    let mut run = Run::default();
    run.push(&mut ev, &background);
    run.push(&mut ev, &noise.samples(10.0, -47.0));
    run.finish(&mut ev);
    assert!(
        run.loud(LoudnessMode::Adaptive).is_empty(),
        "+3 dB raised {:?}",
        run.loud(LoudnessMode::Adaptive)
    );
}

/// Acceptance 2: a 10 s event 20 dB above the background leaves the background estimate within
/// 1 dB (during the event and after it, in particular once its documented recovery time has
/// passed), and the adaptive loud noise stops within the LAF decay after the event ends.
#[test]
fn background_survives_a_10_s_loud_event_and_the_detector_stops_after_it() {
    let mut noise = Noise(0x9e37_79b9);
    let mut ev = adaptive_only();
    let mut run = Run::default();
    run.push(&mut ev, &noise.samples(60.0, -50.0));
    let before = ev.background_dbfs().expect("background learned");

    let mut trace = Vec::new(); // (seconds, estimate) every 100 ms
    let mut follow = |ev: &mut LevelEvents, run: &mut Run, signal: Vec<f32>| {
        for chunk in signal.chunks(4_800) {
            run.push(ev, chunk);
            trace.push((ev.samples_in() as f64 / FS, ev.background_dbfs().unwrap()));
        }
    };
    follow(&mut ev, &mut run, noise.samples(10.0, -30.0));
    follow(&mut ev, &mut run, noise.samples(20.0, -50.0));

    for &(t, bg) in &trace {
        assert!(
            (bg - before).abs() <= 1.0,
            "background {bg} dBFS at {t:.1} s, {before} dBFS before the event"
        );
    }
    let recovered_by = 70.0 + ev.background_learning_time_down_s();
    let at_recovery = trace
        .iter()
        .find(|(t, _)| *t >= recovered_by)
        .expect("trace reaches the recovery time");
    assert!((at_recovery.1 - before).abs() <= 1.0, "{at_recovery:?}");
    assert!(ev.background_learning_time_up_s() > 10.0);

    let loud = run.loud(LoudnessMode::Adaptive);
    assert_eq!(loud.len(), 2, "{loud:?}");
    assert!(
        matches!(*loud[0], LevelEvent::LoudNoiseStart { time_s, .. } if (60.0..=60.5).contains(&time_s)),
        "{loud:?}"
    );
    let LevelEvent::LoudNoiseStop {
        start_s,
        end_s,
        end_of_stream,
        laeq_dbfs,
        ..
    } = *loud[1]
    else {
        panic!("{loud:?}")
    };
    assert!(!end_of_stream);
    assert!((60.0..=60.5).contains(&start_s), "{start_s}");
    // off = background + 9 dB; LAF falls the 11 dB from +20 dB at 34.7 dB/s, ≈ 0.32 s.
    assert!((70.0..=70.5).contains(&end_s), "stopped at {end_s} s");
    assert!(laeq_dbfs > before + 15.0, "event LAeq {laeq_dbfs}");
}

fn loss_of(signal_before: &[f32], fault: &[f32], signal_after: &[f32]) -> Run {
    let mut ev = LevelEvents::new(RATE, LevelEventsConfig::default()).unwrap();
    let mut run = Run::default();
    run.push(&mut ev, signal_before);
    run.push(&mut ev, fault);
    run.push(&mut ev, signal_after);
    run.finish(&mut ev);
    run
}

/// Checks one lost/restored pair: lost for `reason` in [fault + 5 s, fault + 5.2 s), restored
/// 0.5 s (to the 10 ms block) after the signal is back at `back_s`.
fn assert_lost_and_restored(run: &Run, reason: InputFault, fault_s: f64, back_s: f64) {
    let input = run.input();
    assert_eq!(input.len(), 2, "{input:?}");
    let LevelEvent::AudioInputLost {
        reason: lost_reason,
        time_s,
        start_sample,
        fault_start_s,
        ..
    } = *input[0]
    else {
        panic!("{input:?}")
    };
    assert_eq!(lost_reason, reason, "{input:?}");
    assert!(
        (fault_s + 5.0..fault_s + 5.2).contains(&time_s),
        "lost at {time_s} s for a fault from {fault_s} s"
    );
    assert!((fault_start_s - fault_s).abs() <= 0.011, "{fault_start_s}");
    let LevelEvent::AudioInputRestored {
        reason: restored_reason,
        lost_at_sample,
        time_s: restored_s,
        end_of_stream,
        ..
    } = *input[1]
    else {
        panic!("{input:?}")
    };
    assert_eq!(restored_reason, reason);
    assert_eq!(lost_at_sample, start_sample);
    assert!(!end_of_stream);
    assert!(
        (back_s + 0.5..=back_s + 0.52).contains(&restored_s),
        "restored at {restored_s} s, signal back at {back_s} s"
    );
}

/// Acceptance 3: digital silence, a stuck input, a clipped square wave and NaN samples each
/// raise audio_input_lost with their reason about 5 s in, and the signal coming back restores.
#[test]
fn input_loss_silence_stuck_clipped_and_non_finite() {
    let mut noise = Noise(0xdead_beef);
    let before = noise.samples(2.0, -30.0);
    let after = noise.samples(2.0, -30.0);

    let run = loss_of(&before, &vec![0.0; seconds(10.0) as usize], &after);
    assert_lost_and_restored(&run, InputFault::Silence, 2.0, 12.0);

    let run = loss_of(&before, &vec![0.3; seconds(7.0) as usize], &after);
    assert_lost_and_restored(&run, InputFault::Stuck, 2.0, 9.0);

    let square: Vec<f32> = (0..seconds(7.0))
        .map(|n| if (n / 240) % 2 == 0 { 1.0 } else { -1.0 }) // 100 Hz, full scale
        .collect();
    let run = loss_of(&before, &square, &after);
    assert_lost_and_restored(&run, InputFault::Clipped, 2.0, 9.0);

    let mut bad = vec![f32::NAN; seconds(7.0) as usize];
    for (i, x) in bad.iter_mut().enumerate().step_by(1_000) {
        *x = if i % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
    }
    let run = loss_of(&before, &bad, &after);
    assert_lost_and_restored(&run, InputFault::NonFinite, 2.0, 9.0);
    // Nothing non-finite leaks into the reported levels.
    for (_, e) in &run.events {
        if let LevelEvent::SplSummary {
            laeq_dbfs,
            lafmax_dbfs,
            lafmin_dbfs,
            lcpeak_dbfs,
            ..
        } = e
        {
            for v in [laeq_dbfs, lafmax_dbfs, lafmin_dbfs, lcpeak_dbfs] {
                assert!(v.is_finite(), "{e:?}");
            }
        }
    }
}

/// Acceptance 4: SPL summaries of a full-scale 1 kHz sine over 30 s at 48 kHz, every 10 s:
/// sample-accurate bounds, LAeq −3.01 dBFS ± 0.1 dB, momentary loudness −3.01 LUFS, dB SPL =
/// dBFS + calibration offset.
#[test]
fn spl_summaries_of_a_full_scale_sine_with_calibration() {
    let offset_db = 97.5;
    let mut ev = LevelEvents::new(
        RATE,
        LevelEventsConfig {
            spl_summary_interval_s: Some(10.0),
            calibration: Some(Calibration { offset_db }),
            ..LevelEventsConfig::default()
        },
    )
    .unwrap();
    let mut run = Run::default();
    run.push(&mut ev, &tone(30.0, -3.0103));
    run.finish(&mut ev);
    let summaries: Vec<&LevelEvent> = run
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, LevelEvent::SplSummary { .. }))
        .collect();
    assert_eq!(summaries.len(), 3, "{summaries:?}");
    for (k, s) in summaries.iter().enumerate() {
        let LevelEvent::SplSummary {
            start_sample,
            end_sample,
            start_s,
            end_s,
            laeq_dbfs,
            lafmax_dbfs,
            lafmin_dbfs,
            lcpeak_dbfs,
            momentary_lufs_max,
            laeq_db_spl,
            lafmax_db_spl,
            lafmin_db_spl,
            lcpeak_db_spl,
            ..
        } = **s
        else {
            unreachable!()
        };
        let k = k as u64;
        assert_eq!((start_sample, end_sample), (k * 480_000, (k + 1) * 480_000));
        assert_eq!((start_s, end_s), (k as f64 * 10.0, (k + 1) as f64 * 10.0));
        assert!(
            (laeq_dbfs + 3.01).abs() <= 0.1,
            "interval {k}: LAeq {laeq_dbfs}"
        );
        assert!((lafmax_dbfs + 3.01).abs() <= 0.1, "LAFmax {lafmax_dbfs}");
        if k > 0 {
            // The first interval holds the switch-on: LAFmin is the Fast detector rising from
            // rest, LCpeak the C filter's overshoot (+0.3 dB).
            assert!((lafmin_dbfs + 3.01).abs() <= 0.1, "LAFmin {lafmin_dbfs}");
            assert!(lcpeak_dbfs.abs() <= 0.1, "LCpeak {lcpeak_dbfs}");
        }
        let m = momentary_lufs_max.expect("momentary loudness");
        assert!((m + 3.01).abs() <= 0.1, "momentary {m} LUFS");
        for (spl, dbfs) in [
            (laeq_db_spl, laeq_dbfs),
            (lafmax_db_spl, lafmax_dbfs),
            (lafmin_db_spl, lafmin_dbfs),
            (lcpeak_db_spl, lcpeak_dbfs),
        ] {
            assert!((spl.unwrap() - (dbfs + offset_db)).abs() < 1e-9, "{s:?}");
        }
    }
}

/// Acceptance 5: absolute loud noise at −20 dBFS for 0.3 s: a 0.2 s burst at −10 dBFS starts
/// nothing, a 1 s burst does, and the event stops after the burst.
#[test]
fn absolute_loud_noise_needs_its_minimum_duration_and_stops_after_the_burst() {
    let mut ev = LevelEvents::new(
        RATE,
        LevelEventsConfig {
            loud_noise_absolute: Some(AbsoluteLoudness::new(-20.0, 0.3)),
            loud_noise_adaptive: None,
            ..LevelEventsConfig::default()
        },
    )
    .unwrap();
    let mut noise = Noise(0x0bad_cafe);
    let mut run = Run::default();
    run.push(&mut ev, &noise.samples(1.0, -60.0));
    run.push(&mut ev, &tone(0.2, -10.0));
    run.push(&mut ev, &noise.samples(2.0, -60.0));
    assert!(
        run.loud(LoudnessMode::Absolute).is_empty(),
        "the 0.2 s burst raised {:?}",
        run.loud(LoudnessMode::Absolute)
    );
    let burst = ev.samples_in();
    run.push(&mut ev, &tone(1.0, -10.0));
    let burst_end = ev.samples_in();
    run.push(&mut ev, &noise.samples(2.0, -60.0));
    run.finish(&mut ev);

    let loud = run.loud(LoudnessMode::Absolute);
    assert_eq!(loud.len(), 2, "{loud:?}");
    let LevelEvent::LoudNoiseStart {
        start_sample,
        lafmax_dbfs,
        ..
    } = *loud[0]
    else {
        panic!("{loud:?}")
    };
    assert!(
        (burst..=burst + 480).contains(&start_sample),
        "start at {start_sample}, burst at {burst}"
    );
    assert!(lafmax_dbfs > -20.0, "{lafmax_dbfs}");
    let emitted_at = run.events.iter().find(|(_, e)| e == loud[0]).unwrap().0;
    assert!(
        emitted_at >= burst + seconds(0.3) && emitted_at <= burst + seconds(0.35),
        "emitted at {emitted_at}"
    );
    let LevelEvent::LoudNoiseStop {
        end_sample,
        end_of_stream,
        laeq_dbfs,
        ..
    } = *loud[1]
    else {
        panic!("{loud:?}")
    };
    assert!(!end_of_stream);
    assert!(
        end_sample >= burst_end && end_sample <= burst_end + seconds(0.6),
        "stopped at {end_sample}, burst ended at {burst_end}"
    );
    assert!(laeq_dbfs > -14.0 && laeq_dbfs < -9.0, "{laeq_dbfs}");
}
