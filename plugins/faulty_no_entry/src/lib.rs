//! Test fixture: a shared library that is *not* a coevo plugin. It exports a function, but not
//! `coevo_plugin_entry`, so the host must report a missing entry symbol naming this library.

/// A decoy export with a similar name (a typo'd entry point), so the library is not empty.
#[unsafe(no_mangle)]
pub extern "C" fn coevo_plugin_entry_v0() -> u32 {
    0
}
