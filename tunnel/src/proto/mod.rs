//! The sans-IO protocol core.
