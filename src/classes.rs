//! Earshot's classes and how they are read from YAMNet's AudioSet scores.

use serde::{Deserialize, Serialize};

/// A class of sound Earshot reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarshotClass {
    /// Glass breaking: AudioSet Glass (435), Shatter (437).
    GlassBreak,
    /// Verbal aggression: Screaming (11), Shout (6), Yell (9), Bellow (7), Children shouting (10).
    Aggression,
    /// Gunshots and explosions: Gunshot, gunfire (421), Machine gun (422), Explosion (420).
    Gunshot,
    /// Speech (0): context for the other classes, not an alarm by itself.
    Speech,
}

impl EarshotClass {
    /// Every class, in report order.
    pub const ALL: [EarshotClass; 4] = [
        EarshotClass::GlassBreak,
        EarshotClass::Aggression,
        EarshotClass::Gunshot,
        EarshotClass::Speech,
    ];

    /// The snake_case name used in outputs and settings (`glass_break`, …).
    pub fn name(self) -> &'static str {
        match self {
            EarshotClass::GlassBreak => "glass_break",
            EarshotClass::Aggression => "aggression",
            EarshotClass::Gunshot => "gunshot",
            EarshotClass::Speech => "speech",
        }
    }

    /// Parses a name as written by [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Position in [`ALL`](Self::ALL), for per-class arrays.
    pub fn slot(self) -> usize {
        self as usize
    }

    /// YAMNet output rows (AudioSet classes) whose maximum is this class's score.
    pub fn audioset_rows(self) -> &'static [usize] {
        match self {
            EarshotClass::GlassBreak => &[435, 437],
            EarshotClass::Aggression => &[11, 6, 9, 7, 10],
            EarshotClass::Gunshot => &[421, 422, 420],
            EarshotClass::Speech => &[0],
        }
    }

    /// Default detection threshold on the class score (see `README.md`, "Detections", for
    /// how they were chosen on `../shared/eval`).
    pub fn default_threshold(self) -> f32 {
        match self {
            EarshotClass::GlassBreak => 0.5,
            EarshotClass::Aggression => 0.5,
            EarshotClass::Gunshot => 0.5,
            EarshotClass::Speech => 0.5,
        }
    }
}

impl std::fmt::Display for EarshotClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One score per Earshot class, indexed by [`EarshotClass::slot`].
pub type ClassScores = [f32; EarshotClass::ALL.len()];

/// Each class's score: the maximum of its AudioSet rows in `audioset_scores` (521 values).
pub fn class_scores(audioset_scores: &[f32]) -> ClassScores {
    EarshotClass::ALL.map(|c| {
        c.audioset_rows()
            .iter()
            .filter_map(|&r| audioset_scores.get(r).copied())
            .fold(0.0, f32::max)
    })
}

/// Per-class detection thresholds on class scores in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds(pub ClassScores);

impl Default for Thresholds {
    fn default() -> Self {
        Self(EarshotClass::ALL.map(EarshotClass::default_threshold))
    }
}

impl Thresholds {
    /// The threshold of `class`.
    pub fn get(&self, class: EarshotClass) -> f32 {
        self.0[class.slot()]
    }

    /// Parses `CLASS=VALUE` (e.g. `glass_break=0.4`) and sets that threshold.
    ///
    /// # Errors
    /// A message naming the unknown class or the value outside [0, 1].
    pub fn set_from_arg(&mut self, arg: &str) -> Result<(), String> {
        let (name, value) = arg.split_once('=').ok_or_else(|| {
            format!("threshold '{arg}': expected CLASS=VALUE, e.g. glass_break=0.4")
        })?;
        let class = EarshotClass::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = EarshotClass::ALL.iter().map(|c| c.name()).collect();
            format!(
                "threshold '{arg}': unknown class '{name}', expected one of {}",
                names.join(", ")
            )
        })?;
        let v: f32 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f32| (0.0..=1.0).contains(v))
            .ok_or_else(|| {
                format!("threshold '{arg}': value '{value}' is not a number from 0 to 1")
            })?;
        self.0[class.slot()] = v;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_score_is_max_of_members() {
        let mut s = vec![0.0f32; 521];
        s[437] = 0.7;
        s[435] = 0.2;
        s[10] = 0.4;
        s[0] = 0.9;
        let c = class_scores(&s);
        assert_eq!(c[EarshotClass::GlassBreak.slot()], 0.7);
        assert_eq!(c[EarshotClass::Aggression.slot()], 0.4);
        assert_eq!(c[EarshotClass::Gunshot.slot()], 0.0);
        assert_eq!(c[EarshotClass::Speech.slot()], 0.9);
    }

    #[test]
    fn threshold_args_are_validated() {
        let mut t = Thresholds::default();
        t.set_from_arg("glass_break=0.25").unwrap();
        assert_eq!(t.get(EarshotClass::GlassBreak), 0.25);
        assert!(t
            .set_from_arg("glass=0.2")
            .unwrap_err()
            .contains("unknown class 'glass'"));
        assert!(t
            .set_from_arg("gunshot=2")
            .unwrap_err()
            .contains("not a number from 0 to 1"));
        assert!(t
            .set_from_arg("gunshot")
            .unwrap_err()
            .contains("CLASS=VALUE"));
    }
}
