//! What the command line and the benchmarks show a person: the progress of long commands on
//! stderr (`progress`) and PNG line charts (`plot`). No computation of results lives here.

pub mod plot;
pub mod progress;
