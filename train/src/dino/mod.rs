//! DINO's objective and its moving parts (Caron et al., ICCV 2021; docs/dino-loss.md, docs/optim.md):
//! the loss with its centre ([`loss`]), the per-iteration schedules ([`schedule`]) and the teacher's
//! exponential moving average ([`teacher`]).

pub mod koleo;
pub mod loss;
pub mod schedule;
pub mod teacher;

pub use loss::{Centering, DinoLoss, LossOutput};
pub use schedule::{cosine_schedule, Schedules};
pub use teacher::ema_update;
