//! Supervises k3s bound to the tunnel.
