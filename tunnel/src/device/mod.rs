//! The threads that move packet batches between I/O and the protocol core.
