//! Protocol core in virtual time (run with --features virtual-time).
