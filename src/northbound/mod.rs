//! northbound
