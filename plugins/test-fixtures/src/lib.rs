//! Fault injection for the plugin host's tests: each example of this package builds a
//! shared library that is wrong in one way (see `examples/`). Nothing lives here.
