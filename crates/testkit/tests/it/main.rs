//! Integration tests of the testkit: the kube-apiserver double against the recordings of a real
//! kube-apiserver v1.28.4, real kubectl against the double, and the envtest launcher.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod double;
mod envtest;
mod kubectl;
mod replay;
mod support;
