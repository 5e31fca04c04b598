//! Distribution: consumers that read the journal (or the live state derived from it) and serve
//! one audience each. None of them talks to a driver.

pub mod export;
pub mod http;
pub mod live;
pub mod opcua;
pub mod review;
pub mod sparkplug;
