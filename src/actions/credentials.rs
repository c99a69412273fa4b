//! VAPIX service-account credentials from D-Bus (to be written).
