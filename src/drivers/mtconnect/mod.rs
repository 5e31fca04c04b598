//! MTConnect agent client.
pub mod seq;
pub mod xml;
