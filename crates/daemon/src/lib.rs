//! `vfpool serve`: the daemon (issue 13).
