//! Local clip playback backend (to be written).
