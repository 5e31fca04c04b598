//! sim driver
