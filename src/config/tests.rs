//! Loader tests: error text pinned by snapshots, environment overrides, the example file.
