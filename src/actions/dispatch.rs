//! The actions sink (to be written).
