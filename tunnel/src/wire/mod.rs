//! Checked, zero-copy views of untrusted bytes.
