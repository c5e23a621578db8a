//! What the command line and the benchmarks share with a person: the progress of long commands on
//! stderr (`progress`), PNG line charts (`plot`), and the flag groups both take (`args`: device,
//! precision, library parameters named as flags). No computation of results lives here.

pub mod args;
pub mod plot;
pub mod progress;
