//! Baton coordinator library.
