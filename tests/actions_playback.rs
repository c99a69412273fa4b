//! The playback backend against ALSA without a sound card: alsa-lib's `file` PCM
//! (`file:'PATH',raw`, defined in the system `alsa.conf` over the `null` PCM) writes the frames
//! played to a file, S16_LE mono at the clip's rate as the backend negotiates them.
//!
//! - a generated 1 kHz tone (a WAV written here from known 16-bit samples) must come out
//!   sample for sample, scaled by the volume, twice with `repeat = 1`;
//! - the `null` PCM does not pace, so the policy tests write to a FIFO instead, which the test
//!   reads: while the test does not read, the player blocks, as it would on a device. Each
//!   clip opens the PCM (and so the FIFO) anew, so each clip is one stream to end of file;
//! - a real clip of `../shared/eval` is played and compared with its WAV data (skipped with a
//!   message when `../shared` is missing, a failure under `CI=true`).
#![cfg(feature = "alsa")]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use earshot::actions::playback::PlaybackBackend;
use earshot::actions::{ActionError, Backend, Command, PlaybackConfig, PlaybackPolicy};

const RATE: u32 = 16_000;

/// A 1 kHz tone, `seconds` long, peak `amp` of full scale, as 16-bit samples.
fn tone(seconds: f64, amp: f64, hz: f64) -> Vec<i16> {
    let n = (seconds * RATE as f64) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            (amp * 32767.0 * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
        })
        .collect()
}

/// Writes a 16-bit PCM mono WAV of `samples` at [`RATE`].
fn write_wav16(path: &Path, samples: &[i16]) {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut f = Vec::with_capacity(44 + data.len());
    f.extend(b"RIFF");
    f.extend((36 + data.len() as u32).to_le_bytes());
    f.extend(b"WAVEfmt ");
    f.extend(16u32.to_le_bytes());
    f.extend(1u16.to_le_bytes()); // PCM
    f.extend(1u16.to_le_bytes()); // mono
    f.extend(RATE.to_le_bytes());
    f.extend((RATE * 2).to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(16u16.to_le_bytes());
    f.extend(b"data");
    f.extend((data.len() as u32).to_le_bytes());
    f.extend(data);
    std::fs::write(path, f).unwrap();
}

/// The bytes the backend must write for `samples` at `volume` percent (its documented
/// scaling: `round(x · volume/100 · 32768)`, with `x = s / 32768`).
fn scaled_bytes(samples: &[i16], volume: u32) -> Vec<u8> {
    samples
        .iter()
        .map(|&s| (s as f64 * volume as f64 / 100.0).round() as i16)
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

fn file_pcm(path: &Path) -> String {
    format!("file:'{}',raw", path.display())
}

fn config(device: String, policy: PlaybackPolicy, clips: &[(&str, &Path)]) -> PlaybackConfig {
    PlaybackConfig {
        device,
        policy,
        queue: 1,
        clips: clips
            .iter()
            .map(|(k, p)| (k.to_string(), p.to_path_buf()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn clip(id: &str, volume: Option<u32>, repeat: u32) -> Command {
    Command::Clip {
        clip: id.into(),
        volume,
        repeat,
    }
}

#[test]
fn tone_is_written_exactly_scaled_and_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let samples = tone(0.5, 0.8, 1000.0);
    let wav = dir.path().join("tone.wav");
    write_wav16(&wav, &samples);

    for (volume, repeat, expected_plays, pct) in [
        (None, 0, 1, 100),
        (Some(50), 1, 2, 50),
        (Some(30), 0, 1, 30),
    ] {
        let out = dir.path().join(format!("out-{pct}-{repeat}.raw"));
        let mut b = PlaybackBackend::new(&config(
            file_pcm(&out),
            PlaybackPolicy::Queue,
            &[("tone", &wav)],
        ))
        .unwrap();
        assert_eq!(b.name(), format!("playback:{}", file_pcm(&out)));
        b.start().unwrap();
        b.execute("rule", &clip("tone", volume, repeat)).unwrap();
        assert!(b.wait_idle(Duration::from_secs(20)), "playback did not end");
        b.close();
        let got = std::fs::read(&out).unwrap();
        let want = scaled_bytes(&samples, pct).repeat(expected_plays);
        assert_eq!(got.len(), want.len(), "volume {volume:?}, repeat {repeat}");
        if pct == 30 {
            // 0.3 is not exact in f32: allow one step where the product lands on .5.
            let diff = got
                .chunks_exact(2)
                .zip(want.chunks_exact(2))
                .map(|(a, b)| {
                    (i16::from_le_bytes([a[0], a[1]]) as i32
                        - i16::from_le_bytes([b[0], b[1]]) as i32)
                        .abs()
                })
                .max()
                .unwrap();
            assert!(diff <= 1, "largest difference {diff}");
        } else {
            assert!(
                got == want,
                "volume {volume:?}, repeat {repeat}: samples differ"
            );
        }
    }
}

#[test]
fn clip_by_path_and_bad_clips() {
    let dir = tempfile::tempdir().unwrap();
    let samples = tone(0.1, 0.5, 440.0);
    let wav = dir.path().join("beep.wav");
    write_wav16(&wav, &samples);
    let out = dir.path().join("out.raw");
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&out),
        PlaybackPolicy::Replace,
        &[("beep", &wav)],
    ))
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip(wav.to_str().unwrap(), None, 0))
        .unwrap();
    assert!(b.wait_idle(Duration::from_secs(20)));
    assert!(std::fs::read(&out).unwrap() == scaled_bytes(&samples, 100));

    let e = b.execute("rule", &clip("siren", None, 0)).unwrap_err();
    assert!(
        matches!(&e, ActionError::Unknown { id, known, .. } if id == "siren" && known == "beep"),
        "{e:?}"
    );
    let missing = dir.path().join("missing.wav");
    let e = b
        .execute("rule", &clip(missing.to_str().unwrap(), None, 0))
        .unwrap_err();
    assert!(matches!(e, ActionError::Local { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.wav"), "{e}");
    b.close();

    // A configured clip that does not decode: start reports it, naming the file.
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"not a wav file at all").unwrap();
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&out),
        PlaybackPolicy::Replace,
        &[("bad", &bad)],
    ))
    .unwrap();
    let e = b.start().unwrap_err();
    assert!(e.to_string().contains("bad.wav"), "{e}");
    let e = b.execute("rule", &clip("bad", None, 0)).unwrap_err();
    assert!(e.to_string().contains("bad.wav"), "{e}");
}

/// A FIFO the player writes to, read by a thread of the test: each stream (one clip) is sent
/// whole once its writer closes. `first_read` bytes of the first stream are read, then the
/// reader waits for a go on `go` before reading the rest.
struct FifoReader {
    streams: mpsc::Receiver<Vec<u8>>,
    /// Signalled once the first `first_read` bytes are read: the first clip is playing.
    ready: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
}

impl FifoReader {
    /// Waits until the player has written the first bytes of its first clip.
    fn wait_playing(&self) {
        self.ready
            .recv_timeout(Duration::from_secs(20))
            .expect("the player started writing to the FIFO");
    }
}

fn fifo_reader(path: PathBuf, first_read: usize) -> FifoReader {
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let (tx, streams) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut first = true;
        loop {
            // Blocks until the player opens the PCM (and so the FIFO) for a clip.
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            let mut stream = vec![0; if first { first_read } else { 0 }];
            if first {
                if f.read_exact(&mut stream).is_err() || ready_tx.send(()).is_err() {
                    return;
                }
                if go_rx.recv().is_err() {
                    return;
                }
                first = false;
            }
            if f.read_to_end(&mut stream).is_err() || tx.send(stream).is_err() {
                return;
            }
        }
    });
    FifoReader { streams, ready, go }
}

/// Everything written to the FIFO, once the player is idle (or closed). A FIFO does not keep
/// clips apart: when the player opens it for the next clip before the reader has seen the end
/// of the previous one, both arrive as one stream; so streams are concatenated.
fn played(r: &FifoReader) -> Vec<u8> {
    let mut all = r
        .streams
        .recv_timeout(Duration::from_secs(20))
        .expect("the player wrote a clip to the FIFO");
    while let Ok(more) = r.streams.recv_timeout(Duration::from_millis(500)) {
        all.extend(more);
    }
    all
}

#[test]
fn replace_cuts_the_clip_playing() {
    let dir = tempfile::tempdir().unwrap();
    let long = tone(10.0, 0.5, 1000.0);
    let short = tone(0.2, 0.9, 250.0);
    let (long_wav, short_wav) = (dir.path().join("long.wav"), dir.path().join("short.wav"));
    write_wav16(&long_wav, &long);
    write_wav16(&short_wav, &short);
    let fifo = dir.path().join("pcm.fifo");
    let reader = fifo_reader(fifo.clone(), 16_384);
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&fifo),
        PlaybackPolicy::Replace,
        &[("long", &long_wav), ("short", &short_wav)],
    ))
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip("long", None, 0)).unwrap();
    // The player fills the FIFO and blocks, as on a device that plays at its own pace.
    reader.wait_playing();
    b.execute("rule", &clip("short", None, 0)).unwrap();
    reader.go.send(()).unwrap();
    assert!(b.wait_idle(Duration::from_secs(20)), "playback did not end");
    let all = played(&reader);
    // What was played: the start of the long clip, then the whole short one.
    let (long_bytes, short_bytes) = (scaled_bytes(&long, 100), scaled_bytes(&short, 100));
    assert!(
        all.ends_with(&short_bytes),
        "the new clip was not played whole"
    );
    let cut = &all[..all.len() - short_bytes.len()];
    assert!(
        cut.len() >= 16_384 && cut.len() < long_bytes.len() / 2,
        "the long clip was not cut: {} of {} bytes",
        cut.len(),
        long_bytes.len()
    );
    assert!(
        long_bytes.starts_with(cut),
        "the cut clip is not the start of the clip"
    );
    b.close();
}

#[test]
fn queue_plays_in_order_and_drops_beyond_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    // Longer than the FIFO's buffer (64 KiB), so "a" still plays when the others come.
    let a = tone(5.0, 0.5, 1000.0);
    let bb = tone(0.2, 0.9, 250.0);
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    write_wav16(&a_wav, &a);
    write_wav16(&b_wav, &bb);
    let fifo = dir.path().join("pcm.fifo");
    let reader = fifo_reader(fifo.clone(), 16_384);
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&fifo),
        PlaybackPolicy::Queue,
        &[("a", &a_wav), ("b", &b_wav)],
    ))
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip("a", None, 0)).unwrap();
    reader.wait_playing();
    // queue = 1: "b" waits behind "a"; the third is dropped (with a warning), not an error.
    b.execute("rule", &clip("b", None, 0)).unwrap();
    b.execute("rule", &clip("a", Some(10), 0)).unwrap();
    reader.go.send(()).unwrap();
    assert!(b.wait_idle(Duration::from_secs(20)), "playback did not end");
    let mut want = scaled_bytes(&a, 100);
    want.extend(scaled_bytes(&bb, 100));
    let all = played(&reader);
    assert_eq!(all.len(), want.len(), "not the first two clips exactly");
    assert!(all == want, "not the first two clips, whole and in order");
    b.close();
}

#[test]
fn stop_clip_stops_and_clears_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let long = tone(10.0, 0.5, 1000.0);
    let wav = dir.path().join("long.wav");
    write_wav16(&wav, &long);
    let fifo = dir.path().join("pcm.fifo");
    let reader = fifo_reader(fifo.clone(), 16_384);
    let mut b = PlaybackBackend::new(&PlaybackConfig {
        queue: 4,
        ..config(file_pcm(&fifo), PlaybackPolicy::Queue, &[("long", &wav)])
    })
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip("long", None, 0)).unwrap();
    reader.wait_playing();
    b.execute("rule", &clip("long", None, 0)).unwrap();
    b.execute("rule", &Command::StopClip).unwrap();
    reader.go.send(()).unwrap();
    // The queued clip was cleared: the player goes idle without opening the FIFO again.
    assert!(b.wait_idle(Duration::from_secs(20)), "playback did not end");
    let all = played(&reader);
    let long_bytes = scaled_bytes(&long, 100);
    assert!(all.len() < long_bytes.len() / 2, "not stopped");
    assert!(long_bytes.starts_with(&all));
    b.close();
}

#[test]
fn close_stops_playback_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let long = tone(10.0, 0.5, 1000.0);
    let wav = dir.path().join("long.wav");
    write_wav16(&wav, &long);
    let fifo = dir.path().join("pcm.fifo");
    let reader = fifo_reader(fifo.clone(), 16_384);
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&fifo),
        PlaybackPolicy::Replace,
        &[("long", &wav)],
    ))
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip("long", None, 0)).unwrap();
    reader.wait_playing();
    // The player is blocked writing to the FIFO. Close on another thread (it joins the player,
    // which needs the reader to go on), then let the reader drain the FIFO.
    let closer = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        b.close();
        (b, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    reader.go.send(()).unwrap();
    let (mut b, took) = closer.join().unwrap();
    assert!(took < Duration::from_secs(5), "close took {took:?}");
    let all = played(&reader);
    let long_bytes = scaled_bytes(&long, 100);
    assert!(
        all.len() < long_bytes.len() / 2,
        "not stopped: {} of {} bytes",
        all.len(),
        long_bytes.len()
    );
    assert!(long_bytes.starts_with(&all));
    assert!(b.execute("rule", &clip("long", None, 0)).is_err());
}

/// The `data` chunk of a 16-bit PCM mono WAV, parsed here (independently of Earshot's reader).
fn wav16_mono_data(bytes: &[u8]) -> Option<(u32, Vec<u8>)> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut fmt = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..(at + 8 + size).min(bytes.len()))?;
        if id == b"fmt " {
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            fmt = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt?;
            if tag != 1 || channels != 1 || bits != 16 {
                return None;
            }
            return Some((rate, body[..body.len() / 2 * 2].to_vec()));
        }
        at += 8 + size + (size & 1);
    }
    None
}

#[test]
fn real_clip_smoke() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let clips = common::eval_clips(&shared);
    let Some((path, rate, data)) = clips.iter().find_map(|c| {
        let bytes = std::fs::read(&c.file).ok()?;
        let (rate, data) = wav16_mono_data(&bytes)?;
        Some((c.file.clone(), rate, data))
    }) else {
        panic!("no 16-bit mono WAV among the clips of ../shared/eval/labels.csv");
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.raw");
    let mut b = PlaybackBackend::new(&config(
        file_pcm(&out),
        PlaybackPolicy::Replace,
        &[("real", &path)],
    ))
    .unwrap();
    b.start().unwrap();
    b.execute("rule", &clip("real", None, 0)).unwrap();
    assert!(b.wait_idle(Duration::from_secs(30)));
    b.close();
    let got = std::fs::read(&out).unwrap();
    println!(
        "{}: {} Hz, {} samples played",
        path.display(),
        rate,
        got.len() / 2
    );
    assert!(
        got == data,
        "{}: played samples differ from the WAV data",
        path.display()
    );
}

#[test]
fn missing_device_is_logged_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("beep.wav");
    write_wav16(&wav, &tone(0.1, 0.5, 440.0));
    let mut b = PlaybackBackend::new(&config(
        "earshot_no_such_pcm".into(),
        PlaybackPolicy::Queue,
        &[("beep", &wav)],
    ))
    .unwrap();
    b.start().unwrap();
    // The command only queues the clip; the player fails to open the device and logs it.
    b.execute("rule", &clip("beep", None, 0)).unwrap();
    assert!(b.wait_idle(Duration::from_secs(5)), "the player hung");
    b.execute("rule", &clip("beep", None, 0)).unwrap();
    b.close();
}
