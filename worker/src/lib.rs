//! Baton worker library.
