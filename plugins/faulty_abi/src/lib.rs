//! Test fixture: exports `coevo_plugin_entry`, but its table says ABI version
//! [`WRONG_ABI_VERSION`]. The host must refuse it (naming the library and both versions) after
//! reading only `struct_size` and `abi_version`, never calling its (null) function pointers.

use coevo_plugin_api::CoevoPluginTable;

/// The version this fixture claims: one the host will never speak.
pub const WRONG_ABI_VERSION: u32 = 999;

static TABLE: CoevoPluginTable = CoevoPluginTable {
    abi_version: WRONG_ABI_VERSION,
    plugin_name: c"faulty-abi".as_ptr(),
    plugin_version: c"0.1.0".as_ptr(),
    ..CoevoPluginTable::EMPTY
};

/// Entry symbol returning the mis-versioned table.
#[unsafe(no_mangle)]
pub extern "C" fn coevo_plugin_entry() -> *const CoevoPluginTable {
    &TABLE
}
