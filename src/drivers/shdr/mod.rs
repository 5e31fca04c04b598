//! SHDR driver (placeholder)
pub mod parse;
