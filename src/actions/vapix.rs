//! VAPIX backend (to be written: see the actions issue).
