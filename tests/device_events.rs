//! The device integration (`earshot::device`) against the C test double of the ACAP SDK
//! (`earshot-sdk`'s `double` feature): a real glass clip through the pipeline becomes device
//! events with the declared topics, keys and stateful semantics; app parameters make the
//! configuration and their changes apply while running; SDK failures are typed errors that
//! leak nothing.
//!
//! Needs `../shared/eval` beside the repository (a real glass-break clip).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use earshot::classes::EarshotClass;
use earshot::classifier::Classifier;
use earshot::config::Config;
use earshot::device::{Device, DeviceError, DeviceOptions, APP_NAME, QUEUE};
use earshot::sinks::SinkHandle;
use earshot_sdk::double::{Double, Sent};

const GLASS_CLIP: &str =
    "glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000.wav";

fn glass_clip() -> Option<PathBuf> {
    let shared = common::shared_dir()?;
    Some(shared.join("eval").join(GLASS_CLIP))
}

fn seed_defaults(double: &Double, overrides: &[(&str, &str)]) {
    let mut values: BTreeMap<String, String> = earshot::settings::defaults();
    for (k, v) in overrides {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    for (k, v) in &values {
        double.seed_param(k, v);
    }
}

fn options(base_toml: &str) -> DeviceOptions {
    DeviceOptions {
        app_name: APP_NAME.to_owned(),
        base_toml: base_toml.to_owned(),
        overlay: Box::new(|_| {}),
    }
}

/// `topic2` of a recorded key dump.
fn topic2(keys: &str) -> String {
    keys.lines()
        .find_map(|l| l.strip_prefix("tnsaxis:topic2 string=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
        .to_owned()
}

fn value<'a>(keys: &'a str, key: &str) -> Option<&'a str> {
    keys.lines()
        .find_map(|l| l.strip_prefix(&format!(":{key} ")))
        .and_then(|rest| rest.split_once('=').map(|(_, v)| v))
        .map(|v| v.split(' ').next().unwrap_or(v))
}

/// Runs `clip` through the pipeline into the device event sink (and nothing else).
fn run_clip(device: &Device, config: &Config, clip: &Path) -> earshot::run::RunReport {
    let mut classifier = Classifier::embedded().expect("embedded model");
    let source =
        earshot::source::open(&format!("wav:{}", clip.display()), false).expect("open the clip");
    let sink = SinkHandle::spawn(Box::new(device.event_sink()), QUEUE).expect("sink thread");
    earshot::run::run_with_updates(
        config,
        &mut classifier,
        source,
        vec![sink],
        Arc::new(AtomicBool::new(false)),
        Some(device.updates()),
    )
    .expect("run")
}

#[test]
fn a_real_glass_break_becomes_device_events_with_stateful_semantics() {
    let Some(clip) = glass_clip() else { return };
    let double = Double::take();
    seed_defaults(&double, &[("GlassBreakSensitivity", "60")]);
    let (device, config) = Device::start(options("")).expect("device start");
    assert_eq!(
        config.detectors.class(EarshotClass::GlassBreak).sensitivity,
        Some(60),
        "the parameter made the configuration"
    );
    let report = run_clip(&device, &config, &clip);
    let stats = device.stop();

    // Declarations: one stateful per class plus LoudNoise and AudioInputLost, two stateless;
    // all undeclared at stop.
    let declared = double.declarations();
    let names: Vec<String> = declared.iter().map(|d| topic2(&d.keys)).collect();
    assert_eq!(
        names,
        [
            "GlassBreak",
            "Aggression",
            "Gunshot",
            "Speech",
            "LoudNoise",
            "AudioInputLost",
            "Detection",
            "SplSummary"
        ]
    );
    for d in &declared {
        assert!(d.undeclared, "{} undeclared at stop", topic2(&d.keys));
        assert!(d.keys.starts_with(
            "tnsaxis:topic0 string=\"CameraApplicationPlatform\"\n\
             tnsaxis:topic1 string=\"Earshot\" nice=|Earshot\n"
        ));
        let stateful = d.keys.contains(":active bool=<unset> data nice=Active|");
        assert_eq!(stateful, !d.stateless, "{}", d.keys);
    }
    let glass = &declared[0];
    assert!(glass
        .keys
        .contains("tnsaxis:topic2 string=\"GlassBreak\" nice=|Glass break\n"));
    assert!(glass
        .keys
        .contains(":score double=<unset> data nice=Score|\n"));
    assert!(glass
        .keys
        .contains(":level_unit string=<unset> data nice=Level unit|\n"));

    let sent = double.sent();
    assert_eq!(stats.sent as usize, sent.len());
    assert_eq!(stats.failed, 0);
    // Every stateful topic starts inactive.
    for (i, d) in declared.iter().filter(|d| !d.stateless).enumerate() {
        assert_eq!(sent[i].declaration, d.id);
        assert_eq!(sent[i].active, Some(false));
    }
    let of =
        |topic: &str| -> Vec<&Sent> { sent.iter().filter(|s| topic2(&s.keys) == topic).collect() };
    // The glass break: active, then inactive, with its score and level in dBFS.
    let states: Vec<Option<bool>> = of("GlassBreak").iter().map(|s| s.active).collect();
    assert!(
        states.len() >= 3 && states[1] == Some(true) && states.last() == Some(&Some(false)),
        "GlassBreak states {states:?}"
    );
    let start = of("GlassBreak")[1];
    let score: f64 = value(&start.keys, "score").unwrap().parse().unwrap();
    let level: f64 = value(&start.keys, "level").unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&score) && score > 0.1, "score {score}");
    assert!((-100.0..=0.0).contains(&level), "level {level} dBFS");
    assert_eq!(value(&start.keys, "level_unit"), Some("\"dBFS\""));
    // And one Detection pulse per start, naming the class.
    let pulses = of("Detection");
    assert!(!pulses.is_empty());
    assert!(pulses.iter().all(|p| p.active.is_none()));
    assert_eq!(value(&pulses[0].keys, "class"), Some("\"glass_break\""));
    // No other class fired on this clip, and nothing is left active.
    for topic in ["Aggression", "Gunshot", "Speech", "AudioInputLost"] {
        assert!(
            of(topic).iter().all(|s| s.active == Some(false)),
            "{topic}: {:?}",
            of(topic)
        );
    }
    let mut last: BTreeMap<String, Option<bool>> = BTreeMap::new();
    for s in &sent {
        last.insert(topic2(&s.keys), s.active);
    }
    assert!(last.values().all(|a| *a != Some(true)), "{last:?}");
    // The sink counted every event delivered (health events map to none but are delivered).
    let h = report
        .health
        .sinks
        .iter()
        .find(|s| s.name == "device-events")
        .expect("device sink in health");
    assert_eq!(h.failed, 0);
    assert!(h.delivered >= 3, "{h:?}");
    // Counted by the device thread after the sink queued them: closing the sink waits for it,
    // so the run's final health has nothing pending (CI once caught it with 3 still queued).
    assert_eq!(h.pending, 0, "{h:?}");
    assert_eq!(
        double.live_allocs(),
        0,
        "everything the SDK handed out was freed"
    );
}

#[test]
fn parameter_changes_become_new_configurations_and_bad_ones_are_refused() {
    let double = Double::take();
    seed_defaults(&double, &[("AdaptiveMarginDb", "not a number")]);
    let (device, config) =
        Device::start(options("[level]\nadaptive_margin_db = 20.0\n")).expect("device start");
    // The bad parameter fell back to the file's value; the rest came from the parameters.
    assert_eq!(config.level.adaptive_margin_db, 20.0);
    assert_eq!(
        config.detectors.class(EarshotClass::GlassBreak).sensitivity,
        Some(50)
    );

    double.queue_change("GlassBreakSensitivity", "85");
    let next = device
        .updates()
        .recv_timeout(Duration::from_secs(5))
        .expect("a new configuration");
    assert_eq!(
        next.detectors.class(EarshotClass::GlassBreak).sensitivity,
        Some(85)
    );

    double.queue_change("InputLossAfterS", "-4");
    double.queue_change("LoudNoiseDbfs", "5");
    assert!(
        device
            .updates()
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "invalid values publish nothing"
    );
    double.queue_change("AggressionEnabled", "no");
    let next = device
        .updates()
        .recv_timeout(Duration::from_secs(5))
        .expect("a new configuration");
    assert_eq!(
        next.detectors.class(EarshotClass::Aggression).enabled,
        Some(false)
    );
    assert_eq!(
        next.detectors.class(EarshotClass::GlassBreak).sensitivity,
        Some(85),
        "earlier changes are kept"
    );
    let stats = device.stop();
    assert_eq!(stats.changes_applied, 2);
    assert_eq!(stats.changes_refused, 2);
    assert!(double.iterations() > 0);
    assert_eq!(double.live_allocs(), 0);
}

#[test]
fn the_settings_page_writes_app_parameters_on_a_device() {
    use earshot::web::settings::{SettingsStore, DEVICE_STORE};
    use serde_json::json;
    let double = Double::take();
    seed_defaults(&double, &[]);
    let (device, config) = Device::start(options("")).expect("device start");
    let writer = device.parameter_writer();
    let mut store = SettingsStore::for_device(Box::new(move |c| writer.set(c)), config);
    assert_eq!(store.view()["file"], DEVICE_STORE);
    assert!(
        !store.publishes_updates(),
        "the device publishes, not the page"
    );

    // Settings page keys become parameters; the device thread validates, writes, publishes.
    let c = store
        .apply(
            &json!({"detectors": {"glass_break": {"sensitivity": 80}, "speech": {"enabled": true}},
                       "level": {"calibration_offset_db": 101.5}}),
        )
        .expect("accepted");
    assert_eq!(c.detectors.glass_break.sensitivity, Some(80));
    assert_eq!(c.level.calibration_offset_db, Some(101.5));
    assert_eq!(
        double.param_value("GlassBreakSensitivity").as_deref(),
        Some("80")
    );
    assert_eq!(double.param_value("SpeechEnabled").as_deref(), Some("yes"));
    assert_eq!(
        double.param_value("CalibrationOffsetDb").as_deref(),
        Some("101.5")
    );
    let published = device
        .updates()
        .recv_timeout(Duration::from_secs(5))
        .expect("the device published the configuration");
    assert_eq!(published, c);

    // Refused: wrong types, out of range, keys that are no parameter; nothing written.
    let errors = store
        .apply(
            &json!({"detectors": {"glass_break": {"sensitivity": 150, "hold_s": 3.0},
                                      "gunshot": {"enabled": "yes"}}}),
        )
        .unwrap_err();
    let mut keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "detectors.glass_break.hold_s",
            "detectors.glass_break.sensitivity",
            "detectors.gunshot.enabled"
        ],
        "{errors:?}"
    );
    // A value the parameter type takes but the configuration does not: the device thread says.
    let errors = store
        .apply(&json!({"level": {"adaptive_margin_db": 1.0}}))
        .unwrap_err();
    assert_eq!(errors[0].key, "level.adaptive_margin_db", "{errors:?}");
    assert_eq!(
        double.param_value("GlassBreakSensitivity").as_deref(),
        Some("80")
    );
    assert_eq!(
        double.param_value("AdaptiveMarginDb").as_deref(),
        Some("12")
    );
    assert_eq!(store.current().detectors.glass_break.sensitivity, Some(80));
    let stats = device.stop();
    assert_eq!(stats.changes_applied, 1);
    assert_eq!(stats.changes_refused, 1);
    assert_eq!(double.live_allocs(), 0);
}

#[test]
fn sdk_failures_at_start_are_typed_errors_and_leak_nothing() {
    let double = Double::take();
    seed_defaults(&double, &[]);
    double.fail_next("ax_event_handler_declare", 3, "event system busy");
    match Device::start(options("")) {
        Err(DeviceError::Sdk(earshot_sdk::Error::Sdk {
            function, message, ..
        })) => {
            assert_eq!(function, "ax_event_handler_declare");
            assert_eq!(message, "event system busy");
        }
        other => panic!("expected the declare error, got {:?}", other.err()),
    }
    assert_eq!(double.live_allocs(), 0);
    assert_eq!(double.live_errors(), 0);

    double.fail_next("ax_parameter_new", 7, "no such app");
    assert!(matches!(
        Device::start(options("")),
        Err(DeviceError::Sdk(earshot_sdk::Error::Sdk {
            function: "ax_parameter_new",
            ..
        }))
    ));
    // A file value no parameter overrides cannot fall back on anything.
    let err = Device::start(options("[health]\ninterval_s = -1.0\n")).err();
    assert!(
        matches!(&err, Some(DeviceError::Config(e)) if e[0].key.contains("interval_s")),
        "{err:?}"
    );
    assert_eq!(double.live_allocs(), 0);
}

/// Runs `clip` with a JSON-lines sink, sending `updates` (given the run's sinks) before the
/// first block; returns the report and the JSON lines.
fn run_with(clip: &Path, base: &Config, updates: Vec<Config>) -> (earshot::run::RunReport, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let mut config = base.clone();
    config.sinks.jsonl.push(earshot::config::JsonlConfig {
        path: out.display().to_string(),
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel();
    for mut u in updates {
        u.sinks = config.sinks.clone();
        tx.send(u).unwrap();
    }
    let mut classifier = Classifier::embedded().expect("embedded model");
    let source = earshot::source::open(&format!("wav:{}", clip.display()), false).unwrap();
    let sinks = earshot::sinks::spawn_from_config(&config).unwrap();
    let report = earshot::run::run_with_updates(
        &config,
        &mut classifier,
        source,
        sinks,
        Arc::new(AtomicBool::new(false)),
        Some(&rx),
    )
    .expect("run");
    (report, std::fs::read_to_string(&out).unwrap())
}

#[test]
fn detector_settings_apply_live_and_other_changes_restart() {
    let Some(clip) = glass_clip() else { return };
    let base = Config::from_toml("").unwrap();

    // No update: the glass break is reported.
    let (report, text) = run_with(&clip, &base, Vec::new());
    assert!(report.restart_with.is_none());
    assert!(text.contains("\"class\":\"glass_break\""), "{text}");

    // Glass detection switched off: applied live, no restart, no glass break.
    let mut off = base.clone();
    off.detectors.class_mut(EarshotClass::GlassBreak).enabled = Some(false);
    let (report, text) = run_with(&clip, &base, vec![off]);
    assert!(report.restart_with.is_none(), "a detector change is live");
    assert!(!text.contains("\"class\":\"glass_break\""), "{text}");
    assert!(report.audio_s > 1.0, "the whole clip was analysed");

    // A level setting: the run ends and hands the new configuration back.
    let mut louder = base.clone();
    louder.level.adaptive_margin_db = 20.0;
    let (report, _) = run_with(&clip, &base, vec![louder]);
    let next = report.restart_with.expect("a restart");
    assert_eq!(next.level.adaptive_margin_db, 20.0);
    assert!(
        report.audio_s < 1.0,
        "ended at once, after {} s",
        report.audio_s
    );
}
