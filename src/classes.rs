//! Earshot's classes. How each is read from YAMNet's output is [`crate::evidence`].

use serde::{Deserialize, Serialize};

/// A class of sound Earshot reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarshotClass {
    /// Glass breaking (windows, panes, bottles smashed).
    GlassBreak,
    /// Verbal aggression: screaming, shouting, yelling, angry raised voices.
    Aggression,
    /// Gunshots and explosions.
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
}

impl std::fmt::Display for EarshotClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One value per Earshot class, indexed by [`EarshotClass::slot`].
pub type ClassScores = [f32; EarshotClass::ALL.len()];

/// Parses a `CLASS=VALUE` argument (e.g. `--sensitivity glass_break=70`) into the class and the
/// value text.
///
/// # Errors
/// A message quoting the argument: no `=`, or an unknown class (the message lists the known ones).
pub fn parse_class_value(arg: &str) -> Result<(EarshotClass, &str), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("'{arg}': expected CLASS=VALUE, e.g. glass_break=70"))?;
    let class = EarshotClass::from_name(name.trim()).ok_or_else(|| {
        let names: Vec<&str> = EarshotClass::ALL.iter().map(|c| c.name()).collect();
        format!(
            "'{arg}': unknown class '{name}', expected one of {}",
            names.join(", ")
        )
    })?;
    Ok((class, value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_value_args_are_validated() {
        assert_eq!(
            parse_class_value("glass_break=0.25").unwrap(),
            (EarshotClass::GlassBreak, "0.25")
        );
        assert!(parse_class_value("glass=0.2")
            .unwrap_err()
            .contains("unknown class 'glass'"));
        assert!(parse_class_value("gunshot")
            .unwrap_err()
            .contains("CLASS=VALUE"));
    }
}
