//! GPIO output backend (to be written).
