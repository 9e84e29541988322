//! `kex` (Kamailio 3.x core extensions): `setbflag`/`isbflagset`/... are core
//! functions here, so the module only has to exist for `loadmodule "kex.so"`.

use crate::iface::Module;

/// The `kex` module.
pub struct Kex;

impl Module for Kex {
    fn name(&self) -> &'static str {
        "kex"
    }
}
