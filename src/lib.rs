//! coevo
