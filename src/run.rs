//! `earshot run`: the live pipeline.
//!
//! ```text
//! capture thread ─► SPSC ring ─► analysis thread (this one) ─► per-sink bounded queues ─► sink threads
//! Source::run       ringbuf      level events, classifier,      SinkHandle::offer           Sink::deliver
//!                                detectors → Event                (never blocks)
//! ```
//!
//! The analysis thread drains the ring in 100 ms chunks, runs the same stages as `analyze`
//! ([`LevelEvents`], [`Analyzer`], [`DetectorBank`]) and turns what they report into
//! [`Event`]s, numbered and stamped ([`EventStamper`]), offered to every sink. Every
//! `health.interval_s` of wall-clock time, and once at the end, it sends a [`Health`] event
//! with the capture and sink counters, and logs it.
//!
//! Stopping ([`run`]'s `stop` flag, set by SIGINT/SIGTERM): the capture thread returns, the
//! analysis drains what is in the ring, finishes the pipeline (open stateful events get their
//! stop event), sends the last health event, then gives the sinks `sinks.flush_timeout_s` to
//! deliver what they hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ringbuf::traits::{Consumer, Observer};

use crate::classes::EarshotClass;
use crate::classifier::Classifier;
use crate::config::Config;
use crate::detectors::{BankEvent, Detection, DetectorBank};
use crate::events::{
    AudioClock, DetectionEvent, DetectionOnset, Event, EventBody, EventStamper, Health, HealthTag,
};
use crate::level_events::{LevelEvent, LevelEvents};
use crate::pipeline::{Analyzer, Relevel};
use crate::sinks::SinkHandle;
use crate::source::{self, CaptureCounters, Source, SourceError};
use crate::web::live::{LevelPoint, LiveTap, PatchScores, Status, LEVEL_EVERY_S};
use earshot_dsp::logmel::LogMelConfig;

/// Why the run could not start or ended in error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration refused by a pipeline stage (names the setting).
    #[error("{0}")]
    Settings(String),
    /// The source failed; the pipeline was still finished and the sinks flushed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The classifier or a DSP stage failed.
    #[error("{0}")]
    Pipeline(String),
    /// A thread could not be started.
    #[error("starting the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Seconds of audio analysed.
    pub audio_s: f64,
    /// Events produced (each offered to every sink).
    pub events: u64,
    /// The last health report.
    pub health: Health,
    /// Sinks that did not finish within the flush timeout.
    pub sinks_not_flushed: Vec<String>,
    /// Set when the run ended for new settings it could not take live
    /// ([`run_with_updates`]): run again with this configuration.
    pub restart_with: Option<Box<Config>>,
}

/// Emits events: stamps them and offers them to every sink; logs the ones operators care about.
struct Emitter<'a> {
    stamper: Option<EventStamper>,
    device_id: String,
    rate_hz: u32,
    calibration_offset_db: Option<f64>,
    counters: Arc<CaptureCounters>,
    sinks: &'a [SinkHandle],
    count: u64,
}

impl Emitter<'_> {
    fn stamper(&mut self) -> &mut EventStamper {
        let (device_id, rate, counters) = (&self.device_id, self.rate_hz, &self.counters);
        self.stamper.get_or_insert_with(|| {
            let start = counters.first_frame_time().unwrap_or_else(SystemTime::now);
            EventStamper::new(device_id.clone(), AudioClock::new(start, rate))
        })
    }

    fn emit(&mut self, body: EventBody, stream_time_s: f64) {
        self.emit_marked(body, stream_time_s, false);
    }

    fn emit_marked(&mut self, body: EventBody, stream_time_s: f64, test: bool) {
        let mut event = self.stamper().stamp(body, stream_time_s);
        event.test = test;
        log_event(&event);
        let event = Arc::new(event);
        for s in self.sinks {
            s.offer(&event);
        }
        self.count += 1;
    }
}

impl Emitter<'_> {
    /// A test detection of `class` at `t` (`POST /api/test/<class>`): start, pulse and stop,
    /// each marked `"test": true`, so rules fire and stateful consumers end inactive. The level
    /// is the LAF at the time, the score 1.
    fn test_detection(&mut self, class: EarshotClass, t: f64, laf_dbfs: f64) {
        let sample = (t * self.rate_hz as f64).round().max(0.0) as u64;
        let spl = self.calibration_offset_db.map(|o| laf_dbfs + o);
        let onset = DetectionOnset {
            class,
            start_sample: sample,
            start_s: t,
            emitted_s: t,
            score: 1.0,
            lafmax_dbfs: laf_dbfs,
            lafmax_db_spl: spl,
        };
        tracing::info!(class = class.name(), "test detection");
        self.emit_marked(
            EventBody::Detection(DetectionEvent::DetectionStart(onset.clone())),
            t,
            true,
        );
        self.emit_marked(
            EventBody::Detection(DetectionEvent::Detection(onset)),
            t,
            true,
        );
        let stop = Detection {
            class,
            start_sample: sample,
            end_sample: sample,
            start_s: t,
            end_s: t,
            emitted_s: t,
            peak_score: 1.0,
            lafmax_dbfs: laf_dbfs,
            laeq_dbfs: laf_dbfs,
            lafmax_db_spl: spl,
            laeq_db_spl: spl,
        };
        self.emit_marked(
            EventBody::Detection(DetectionEvent::DetectionStop(stop)),
            t,
            true,
        );
    }

    /// Emits what the detector bank reported; `now_s` is the audio time it was known.
    fn bank_event(&mut self, be: BankEvent<'_>, now_s: f64) {
        match be {
            BankEvent::Raw(raw) => {
                let onset =
                    DetectionEvent::from_detector(raw, self.rate_hz, self.calibration_offset_db);
                if let Some(d) = onset {
                    let t = match &d {
                        DetectionEvent::DetectionStart(o) | DetectionEvent::Detection(o) => {
                            o.emitted_s
                        }
                        DetectionEvent::DetectionStop(_) => now_s,
                    };
                    self.emit(EventBody::Detection(d), t);
                }
            }
            BankEvent::Finished(d) => self.emit(
                EventBody::Detection(DetectionEvent::DetectionStop(d.clone())),
                now_s.max(d.end_s),
            ),
        }
    }
}

fn log_event(e: &Event) {
    match &e.body {
        EventBody::Detection(DetectionEvent::DetectionStart(o)) => tracing::info!(
            class = o.class.name(),
            start_s = format_args!("{:.2}", o.start_s),
            score = format_args!("{:.2}", o.score),
            lafmax_dbfs = format_args!("{:.1}", o.lafmax_dbfs),
            "detection started"
        ),
        EventBody::Detection(DetectionEvent::DetectionStop(d)) => tracing::info!(
            class = d.class.name(),
            start_s = format_args!("{:.2}", d.start_s),
            end_s = format_args!("{:.2}", d.end_s),
            peak_score = format_args!("{:.2}", d.peak_score),
            "detection stopped"
        ),
        EventBody::Level(LevelEvent::AudioInputLost { reason, .. }) => {
            tracing::warn!(reason = ?reason, "audio input lost")
        }
        EventBody::Level(LevelEvent::AudioInputRestored { lost_for_s, .. }) => {
            tracing::info!(
                lost_for_s = format_args!("{lost_for_s:.1}"),
                "audio input restored"
            )
        }
        EventBody::Level(LevelEvent::LoudNoiseStart {
            mode, lafmax_dbfs, ..
        }) => tracing::info!(
            mode = ?mode,
            lafmax_dbfs = format_args!("{lafmax_dbfs:.1}"),
            "loud noise started"
        ),
        _ => tracing::debug!(event = e.kind(), seq = e.seq, "event"),
    }
}

/// Runs `source` through the pipeline into `sinks` until the input ends or `stop` is set.
///
/// `config` must be validated ([`Config::validate`]); the detectors, level events and ring
/// size come from it.
///
/// # Errors
/// [`RunError`]; a source that fails mid-run still has its pipeline finished, its last health
/// event sent and the sinks flushed before the error is returned.
pub fn run(
    config: &Config,
    classifier: &mut Classifier,
    source: Box<dyn Source>,
    sinks: Vec<SinkHandle>,
    stop: Arc<AtomicBool>,
) -> Result<RunReport, RunError> {
    run_with_updates(config, classifier, source, sinks, stop, None)
}

/// [`run`], taking new configurations from `updates` while running (the device's app
/// parameters, a settings page); each must be validated.
///
/// A change of the detectors' settings only (`[detectors]`: sensitivity, enabled, ...) applies
/// at once: detections in progress end at the current sample (their stop events are sent) and
/// the detectors go on with the new settings; the level meters, background estimate and
/// classifier keep their state. Any other change (sinks, level settings, input, rules) ends
/// the run as the end of input does (stops sent, sinks flushed) and returns it in
/// [`RunReport::restart_with`] for the caller to run again with.
///
/// # Errors
/// As [`run`].
pub fn run_with_updates(
    config: &Config,
    classifier: &mut Classifier,
    source: Box<dyn Source>,
    sinks: Vec<SinkHandle>,
    stop: Arc<AtomicBool>,
    updates: Option<&Receiver<Config>>,
) -> Result<RunReport, RunError> {
    run_with(
        config,
        classifier,
        source,
        sinks,
        stop,
        RunHooks {
            updates,
            ..RunHooks::default()
        },
    )
}

/// What a run takes from, and gives to, the world beside its sinks: new settings, test
/// requests, and the live view.
#[derive(Default)]
pub struct RunHooks<'a> {
    /// New validated configurations (device parameters, the settings page); see
    /// [`run_with_updates`].
    pub updates: Option<&'a Receiver<Config>>,
    /// Classes to raise a test detection of (`POST /api/test/<class>`): start, pulse and stop
    /// marked `"test": true`, at the current audio time, through every sink and rule.
    pub tests: Option<&'a Receiver<EarshotClass>>,
    /// The live view: a level every 0.1 s of audio, every patch's class evidence, and the
    /// status once a second. Sends never block.
    pub live: Option<LiveTap>,
    /// Told of every configuration taken from `updates` (the settings page shows what is in
    /// force, whoever changed it).
    pub on_config: Option<&'a crate::web::WebServer>,
}

/// [`run_with_updates`] with every hook ([`RunHooks`]).
///
/// # Errors
/// As [`run`].
pub fn run_with(
    config: &Config,
    classifier: &mut Classifier,
    source: Box<dyn Source>,
    mut sinks: Vec<SinkHandle>,
    stop: Arc<AtomicBool>,
    hooks: RunHooks<'_>,
) -> Result<RunReport, RunError> {
    let RunHooks {
        updates,
        tests,
        live,
        on_config,
    } = hooks;
    let started = Instant::now();
    // The capture thread's stop: `stop` (signals) or a restart for new settings.
    let stop_capture = Arc::new(AtomicBool::new(false));
    let mut current = config.clone();
    let mut restart_with: Option<Box<Config>> = None;
    let info = source.info().clone();
    let rate = info.sample_rate_hz;
    let detector_config = config.detector_config();
    let mut bank = DetectorBank::new(rate, &detector_config).map_err(RunError::Settings)?;
    let mut level = LevelEvents::new(rate, config.level_events_config())
        .map_err(|e| RunError::Settings(e.to_string()))?;
    let mut analyzer = Analyzer::new(rate, LogMelConfig::default())
        .and_then(|a| a.with_relevel(Some(Relevel::default())))
        .map(|a| a.with_gate(config.cascade_gate()))
        .map_err(|e| RunError::Pipeline(e.to_string()))?;

    let ring_frames = ((rate as u64 * config.input.ring_ms as u64) / 1000) as usize;
    let counters = Arc::new(CaptureCounters::default());
    let (mut writer, mut ring) = source::ring(
        ring_frames,
        info.live,
        Arc::clone(&counters),
        Arc::clone(&stop_capture),
    );
    let ring_frames = ring.capacity().get();
    let capture = {
        let counters = Arc::clone(&counters);
        let mut source = source;
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let r = source.run(&mut writer);
                counters.ended.store(true, Ordering::Release);
                r
            })
            .map_err(|source| RunError::Thread {
                what: "capture",
                source,
            })?
    };
    tracing::info!(
        input = %info.description,
        sample_rate_hz = rate,
        channels = info.channels,
        live = info.live,
        ring_ms = config.input.ring_ms,
        sinks = sinks.len(),
        model = classifier.source(),
        "running"
    );

    let mut emitter = Emitter {
        stamper: None,
        device_id: config.device_id.clone(),
        rate_hz: rate,
        calibration_offset_db: detector_config.calibration_offset_db,
        counters: Arc::clone(&counters),
        sinks: &sinks,
        count: 0,
    };
    let health_every = Duration::from_secs_f64(config.health.interval_s);
    let mut next_health = Instant::now() + health_every;
    let mut underruns = 0u64;
    let mut empty_since: Option<Instant> = None;
    let mut stop_seen: Option<Instant> = None;
    let budget = Duration::from_millis(config.input.ring_ms as u64);
    let chunk = (rate as usize / 10).max(256);
    let mut buf = vec![0f32; chunk];
    let mut done: Vec<Detection> = Vec::with_capacity(8);
    let mut samples: u64 = 0;
    let mut pipeline_error = None;
    let level_every = ((rate as f64 * LEVEL_EVERY_S).round() as u64).max(1);
    let mut next_level_sample = level_every;
    // Busy time of this thread since the last status, for the status's CPU share.
    let mut busy = Duration::ZERO;
    let mut busy_since = Instant::now();
    let mut next_status = Instant::now();

    let health = |sinks: &[SinkHandle],
                  samples: u64,
                  underruns: u64,
                  ring_fill: usize,
                  (patches, patches_classified): (u64, u64)| Health {
        event: HealthTag::Health,
        input: info.description.clone(),
        sample_rate_hz: rate,
        audio_s: samples as f64 / rate as f64,
        uptime_s: started.elapsed().as_secs_f64(),
        ring_frames,
        overruns: counters.overruns.load(Ordering::Relaxed),
        overrun_frames: counters.overrun_frames.load(Ordering::Relaxed),
        underruns,
        xruns: counters.xruns.load(Ordering::Relaxed),
        backlog_s: ring_fill as f64 / rate as f64,
        patches,
        patches_classified,
        sinks: sinks.iter().map(SinkHandle::health).collect(),
    };

    loop {
        if stop.load(Ordering::Relaxed) {
            stop_capture.store(true, Ordering::Relaxed);
        }
        if let Some(next) = updates.and_then(|rx| rx.try_iter().last()) {
            if let Some(w) = on_config {
                w.set_current(next.clone());
            }
            if needs_restart(&current, &next) {
                tracing::info!("new settings need a restart of the pipeline");
                restart_with = Some(Box::new(next));
                stop_capture.store(true, Ordering::Relaxed);
                break;
            }
            if next.detector_config() != current.detector_config() {
                match DetectorBank::new(rate, &next.detector_config()) {
                    Ok(new_bank) => {
                        let t = samples as f64 / rate as f64;
                        bank.finish(t, &mut done, &mut |be| emitter.bank_event(be, t));
                        done.clear();
                        bank = new_bank;
                        tracing::info!(
                            audio_s = format_args!("{t:.2}"),
                            "detector settings applied"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "new detector settings refused"),
                }
            }
            analyzer.set_gate(next.cascade_gate());
            current = next;
        }
        if let Some(rx) = tests {
            for class in rx.try_iter() {
                let t = samples as f64 / rate as f64;
                emitter.test_detection(class, t, level.now().laf_dbfs);
            }
        }
        let n = ring.pop_slice(&mut buf);
        if n == 0 {
            let ended = counters.ended.load(Ordering::Acquire);
            if ended && ring.is_empty() {
                break;
            }
            if stop_capture.load(Ordering::Relaxed) {
                // A source blocked in a read (stdin with no writer) is left behind after 1 s.
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) && ring.is_empty() {
                    tracing::warn!("the source did not stop within 1 s; finishing without it");
                    break;
                }
            }
            if info.live {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > budget {
                    underruns += 1;
                    tracing::warn!(
                        waited_ms = since.elapsed().as_millis() as u64,
                        "no audio from the source within the latency budget (underrun)"
                    );
                    empty_since = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        } else {
            empty_since = None;
            let work = Instant::now();
            let block = &buf[..n];
            level.push(block, &mut |e| {
                let t = level_event_time(&e);
                emitter.emit(EventBody::Level(e), t);
            });
            if let Some(tap) = &live {
                let now = level.now();
                if now.end_sample >= next_level_sample {
                    next_level_sample = now.end_sample + level_every;
                    tap.level(LevelPoint {
                        t: now.end_sample as f64 / rate as f64,
                        laf_dbfs: now.laf_dbfs,
                        laeq_1s_dbfs: now.laeq_1s_dbfs,
                        background_dbfs: now.background_dbfs,
                    });
                }
            }
            let r = analyzer.push(classifier, block, &mut |p| {
                let patch_end = p.end_s;
                if let Some(tap) = &live {
                    tap.patch(PatchScores {
                        t: patch_end,
                        start_s: p.start_s,
                        end_s: p.end_s,
                        scores: p.class_scores,
                    });
                }
                bank.push(&p, p.background_dbfs, &mut done, &mut |be| {
                    emitter.bank_event(be, patch_end)
                });
            });
            if let Err(e) = r {
                pipeline_error = Some(e.to_string());
                stop.store(true, Ordering::Relaxed);
                stop_capture.store(true, Ordering::Relaxed);
                break;
            }
            done.clear();
            samples += n as u64;
            busy += work.elapsed();
        }
        if let Some(tap) = &live {
            if Instant::now() >= next_status {
                next_status = Instant::now() + Duration::from_secs(1);
                let wall = busy_since.elapsed().as_secs_f64();
                let share = if wall > 0.0 {
                    (busy.as_secs_f64() / wall).min(1.0)
                } else {
                    0.0
                };
                busy = Duration::ZERO;
                busy_since = Instant::now();
                let h = health(
                    emitter.sinks,
                    samples,
                    underruns,
                    ring.occupied_len(),
                    analyzer.patch_counts(),
                );
                tap.status(Status::from_health(
                    &h,
                    info.live,
                    share,
                    classifier.source(),
                    level.background_dbfs(),
                ));
            }
        }
        if Instant::now() >= next_health {
            next_health += health_every;
            let h = health(
                emitter.sinks,
                samples,
                underruns,
                ring.occupied_len(),
                analyzer.patch_counts(),
            );
            log_health(&h);
            let t = samples as f64 / rate as f64;
            emitter.emit(EventBody::Health(h), t);
        }
    }

    // End of input or stop: finish the pipeline so open stateful events get their stop.
    let duration_s = samples as f64 / rate as f64;
    // `finish` resets the analyser's counts; its summary carries the final ones.
    let mut patch_counts = analyzer.patch_counts();
    if pipeline_error.is_none() {
        let r = analyzer.finish(classifier, &mut |p| {
            let patch_end = p.end_s;
            bank.push(&p, p.background_dbfs, &mut done, &mut |be| {
                emitter.bank_event(be, patch_end)
            });
        });
        match r {
            Ok(summary) => patch_counts = (summary.patches, summary.classified),
            Err(e) => pipeline_error = Some(e.to_string()),
        }
    }
    bank.finish(duration_s, &mut done, &mut |be| {
        emitter.bank_event(be, duration_s)
    });
    level.finish(&mut |e| {
        emitter.emit(EventBody::Level(e), duration_s);
    });
    let last = health(emitter.sinks, samples, underruns, 0, patch_counts);
    log_health(&last);
    emitter.emit(EventBody::Health(last), duration_s);
    let events = emitter.count;

    if restart_with.is_some() {
        // The next pass opens the input again: let this one release it first.
        let until = Instant::now() + Duration::from_secs(2);
        while !capture.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let source_result = if capture.is_finished() {
        capture.join().unwrap_or(Ok(()))
    } else {
        Ok(())
    };

    let deadline = Instant::now() + Duration::from_secs_f64(config.sinks.flush_timeout_s);
    let mut sinks_not_flushed = Vec::new();
    for s in &mut sinks {
        if !s.close(deadline) {
            sinks_not_flushed.push(s.name().to_owned());
        }
    }
    let health = {
        let mut h = health(&sinks, samples, underruns, 0, patch_counts);
        h.uptime_s = started.elapsed().as_secs_f64();
        h
    };
    for s in &health.sinks {
        // The last health event was sent before the sinks flushed; these are the final counts.
        tracing::info!(
            sink = %s.name,
            state = s.state,
            delivered = s.delivered,
            dropped_queue_full = s.dropped_queue_full,
            dropped_backlog_full = s.dropped_backlog_full,
            failed = s.failed,
            pending = s.pending,
            "sink closed"
        );
        if sinks_not_flushed.contains(&s.name) || s.pending > 0 {
            tracing::warn!(
                sink = %s.name,
                pending = s.pending,
                "sink did not deliver everything within sinks.flush_timeout_s"
            );
        }
    }
    tracing::info!(audio_s = format_args!("{duration_s:.2}"), events, "stopped");
    source_result?;
    if let Some(e) = pipeline_error {
        return Err(RunError::Pipeline(e));
    }
    Ok(RunReport {
        audio_s: duration_s,
        events,
        health,
        sinks_not_flushed,
        restart_with,
    })
}

/// True when `next` differs from `current` in more than the detectors' settings.
fn needs_restart(current: &Config, next: &Config) -> bool {
    let mut same_detectors = next.clone();
    same_detectors.detectors = current.detectors.clone();
    same_detectors.gate = current.gate.clone();
    same_detectors != *current
}

/// When a level event was decided, on the audio clock.
fn level_event_time(e: &LevelEvent) -> f64 {
    match e {
        LevelEvent::LoudNoiseStart { time_s, .. } => *time_s,
        LevelEvent::LoudNoiseStop { end_s, .. } => *end_s,
        LevelEvent::SplSummary { end_s, .. } => *end_s,
        LevelEvent::AudioInputLost { time_s, .. } => *time_s,
        LevelEvent::AudioInputRestored { time_s, .. } => *time_s,
    }
}

fn log_health(h: &Health) {
    let dropped: u64 = h
        .sinks
        .iter()
        .map(|s| s.dropped_queue_full + s.dropped_backlog_full + s.failed)
        .sum();
    let down: Vec<&str> = h
        .sinks
        .iter()
        .filter(|s| s.state != "up")
        .map(|s| s.name.as_str())
        .collect();
    if h.overruns > 0 || dropped > 0 || !down.is_empty() || h.underruns > 0 {
        tracing::warn!(
            audio_s = format_args!("{:.1}", h.audio_s),
            overruns = h.overruns,
            overrun_frames = h.overrun_frames,
            underruns = h.underruns,
            xruns = h.xruns,
            sink_drops = dropped,
            sinks_not_up = ?down,
            "health"
        );
    } else {
        tracing::info!(
            audio_s = format_args!("{:.1}", h.audio_s),
            backlog_s = format_args!("{:.2}", h.backlog_s),
            "health"
        );
    }
}
