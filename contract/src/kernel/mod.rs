//! Kernel feature profiles and the engine that checks a kernel against them.
