//! Integration tests of the federation planner, the fleet index and escalation prevention.

mod fixtures;
mod properties;
mod table;
