//! `pv`: in this server pseudo-variables are core; the module only exists so
//! `loadmodule "pv.so"` works.

use crate::iface::Module;

/// The `pv` module.
pub struct Pv;

impl Module for Pv {
    fn name(&self) -> &'static str {
        "pv"
    }
}
