//! Per-patch evidence for each Earshot class, from YAMNet's AudioSet scores and the patch's
//! spectral shape. Each evidence value is in [0, 1]; the detectors threshold it.
//!
//! **Family evidence** (glass break, gunshot/explosion, the shouted part of aggression): each
//! member AudioSet class has a *reference score*, the score at which that class alone is full
//! evidence; the family's evidence is `max_i min(1, score_i / reference_i)`. A reference below
//! 1 says that YAMNet under-reports the class on real recordings (its AudioSet label prior is
//! low); a reference above the usual threshold says a class alone is weak evidence (YAMNet's
//! "Glass" also fires on clinking glasses).
//!
//! **Raised voice** (aggression): acted angry speech and battle cries are rarely labelled
//! Shout/Yell/Screaming by YAMNet, but they are *voices* with a *raised vocal effort*, which
//! shows in the spectrum: flatter (tilt) and with more energy above 2 kHz than speech at normal
//! effort ([`earshot_dsp::spectral`]). The raised-voice evidence is a soft AND (the minimum) of
//! three ramps and a veto:
//! - voice: the highest score of the voice family (speech, conversation, shouting, groans, …)
//!   divided by [`VOICE_REFERENCE`], capped at 1;
//! - tilt: 0 at [`TILT_RAMP_DB`]`.0` dB/octave, 1 at `.1`, linear between;
//! - high-frequency ratio: 0 at [`HF_RAMP_DB`]`.0` dB, 1 at `.1`;
//! - veto: `1 − min(1, s / 0.2)` with `s` the highest score of laughter, cheering, crowd and
//!   singing ([`NOT_AGGRESSION`]): loud, bright voices that are not aggression.
//!
//! With threshold 0.5 this reads: a voice score ≥ 0.15, tilt ≥ +2 dB/octave, a high-frequency
//! ratio ≥ −16 dB and laughter/cheering/crowd/singing below 0.1. The aggression detector's level
//! gate adds that the voice is louder than what the place has been hearing
//! ([`crate::detectors::AGGRESSION_ABOVE_RECENT_DB`]). Aggression evidence is the larger of the shouted-family and raised-voice
//! evidence. The reference values come from the tuning procedure in `models/README.md`
//! (measured on `../shared/eval`, not on single clips).

use earshot_dsp::spectral::PatchShape;

use crate::classes::{ClassScores, EarshotClass};

/// (AudioSet row, reference score) of the glass-break family.
pub const GLASS_BREAK: &[(usize, f32)] = &[
    (463, 0.15), // Smash, crash
    (437, 0.5),  // Shatter
    (464, 0.7),  // Breaking
    (435, 2.0),  // Glass (alone, it also means clinking glasses)
];

/// (AudioSet row, reference score) of the gunshot/explosion family.
pub const GUNSHOT: &[(usize, f32)] = &[
    (421, 1.3), // Gunshot, gunfire
    (422, 1.3), // Machine gun
    (423, 1.3), // Fusillade
    (424, 1.3), // Artillery fire
    (425, 1.3), // Cap gun
    (420, 1.3), // Explosion
    (430, 1.3), // Boom
    (428, 1.3), // Burst, pop
];

/// (AudioSet row, reference score) of the shouted family of aggression.
pub const SHOUTED: &[(usize, f32)] = &[
    (6, 0.5),  // Shout
    (9, 0.5),  // Yell
    (11, 0.5), // Screaming
    (7, 0.5),  // Bellow
];

/// AudioSet rows of the voice family: any voice, at any effort.
pub const VOICE: &[usize] = &[0, 1, 2, 3, 6, 7, 8, 9, 10, 11];

/// Voice-family score that counts as a certain voice.
pub const VOICE_REFERENCE: f32 = 0.3;
/// Tilt ramp of the raised-voice evidence, dB per octave: (0 at, 1 at).
pub const TILT_RAMP_DB: (f32, f32) = (0.0, 4.0);
/// High-frequency-ratio ramp of the raised-voice evidence, dB: (0 at, 1 at).
pub const HF_RAMP_DB: (f32, f32) = (-18.0, -14.0);

/// AudioSet rows of loud, bright voices that are not aggression: Laughter, Baby laughter,
/// Giggle, Snicker, Belly laugh, Chuckle, Cheering, Crowd, Singing.
pub const NOT_AGGRESSION: &[usize] = &[13, 14, 15, 16, 17, 18, 61, 64, 24];
/// Score of the [`NOT_AGGRESSION`] family at which the raised-voice evidence is vetoed.
pub const NOT_AGGRESSION_REFERENCE: f32 = 0.2;

fn family(scores: &[f32], members: &[(usize, f32)]) -> f32 {
    members
        .iter()
        .filter_map(|&(row, reference)| scores.get(row).map(|s| (s / reference).min(1.0)))
        .fold(0.0, f32::max)
}

fn ramp(x: f32, (zero, one): (f32, f32)) -> f32 {
    if !x.is_finite() {
        return 0.0;
    }
    ((x - zero) / (one - zero)).clamp(0.0, 1.0)
}

/// Raised-voice evidence of one patch (see the module documentation), in [0, 1].
pub fn raised_voice(scores: &[f32], shape: &PatchShape) -> f32 {
    let voice = VOICE
        .iter()
        .filter_map(|&r| scores.get(r).copied())
        .fold(0.0, f32::max);
    let not_aggression = NOT_AGGRESSION
        .iter()
        .filter_map(|&r| scores.get(r).copied())
        .fold(0.0, f32::max);
    (voice / VOICE_REFERENCE)
        .min(1.0)
        .min(ramp(shape.tilt_db_per_octave, TILT_RAMP_DB))
        .min(ramp(shape.hf_ratio_db, HF_RAMP_DB))
        .min(1.0 - (not_aggression / NOT_AGGRESSION_REFERENCE).min(1.0))
}

/// The evidence for every Earshot class from one patch's 521 AudioSet scores and its spectral
/// shape; indexed by [`EarshotClass::slot`]. Speech is YAMNet's "Speech" score as it is.
/// Missing rows (a shorter score vector) count as 0.
pub fn evidence(scores: &[f32], shape: &PatchShape) -> ClassScores {
    let mut e = [0.0; EarshotClass::ALL.len()];
    e[EarshotClass::GlassBreak.slot()] = family(scores, GLASS_BREAK);
    e[EarshotClass::Aggression.slot()] = family(scores, SHOUTED).max(raised_voice(scores, shape));
    e[EarshotClass::Gunshot.slot()] = family(scores, GUNSHOT);
    e[EarshotClass::Speech.slot()] = scores.first().copied().unwrap_or(0.0);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audioset::display_name;

    #[test]
    fn family_rows_are_the_named_audioset_classes() {
        let names =
            |f: &[(usize, f32)]| f.iter().map(|&(r, _)| display_name(r)).collect::<Vec<_>>();
        assert_eq!(
            names(GLASS_BREAK),
            ["Smash, crash", "Shatter", "Breaking", "Glass"]
        );
        assert_eq!(names(SHOUTED), ["Shout", "Yell", "Screaming", "Bellow"]);
        assert_eq!(
            names(GUNSHOT),
            [
                "Gunshot, gunfire",
                "Machine gun",
                "Fusillade",
                "Artillery fire",
                "Cap gun",
                "Explosion",
                "Boom",
                "Burst, pop"
            ]
        );
        let voice: Vec<_> = VOICE.iter().map(|&r| display_name(r)).collect();
        assert_eq!(voice[0], "Speech");
        assert!(voice.contains(&"Children shouting"));
    }
}
