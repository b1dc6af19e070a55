//! Reading `.deb` packages: the `ar` container, `control.tar` and `data.tar`.

pub mod decoded;
pub mod reader;
