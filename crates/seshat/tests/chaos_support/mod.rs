//! Chaos test support: real `seshat` processes, each in its own network
//! namespace, and a recorded concurrent workload.

#![allow(dead_code)]

pub mod netns;
pub mod workload;
