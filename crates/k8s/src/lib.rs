//! vfpool on Kubernetes: VFs as DRA devices and as device-plugin resources (issue 14).
