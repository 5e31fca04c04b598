//! MTConnect agent client.
pub mod multipart;
pub mod seq;
pub mod xml;
