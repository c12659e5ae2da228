//! Every kind compiled into stackflow, registered in one place: the blocks of
//! [`crate::blocks`], the losses and samplers of [`crate::train`] and the sentence
//! encoders of [`crate::encoders`].

use crate::registry::Registry;

impl Registry {
    /// A registry with every built-in kind.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        crate::blocks::register_builtins(&mut r).expect("built-in kinds are unique");
        crate::train::register_builtins(&mut r).expect("built-in kinds are unique");
        crate::encoders::register_builtins(&mut r).expect("built-in kinds are unique");
        r
    }
}
