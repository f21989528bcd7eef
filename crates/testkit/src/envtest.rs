//! A real kube-apiserver for tests (envtest).
