//! The kitchen's runs, each wiring input → parse → dispatch → outputs on its threads:
//! [`replay`] for `-r FILE`, [`live`] for `-i IFACE`. Both take the same
//! [`BetweenSteps`] hook (hot reload in `nd-sniff`), applied at batch boundaries.

use crate::dispatch::{Dispatcher, SinkError};

pub mod live;
pub mod replay;

/// Work the calling thread does between steps (hot reload in `nd-sniff`), in a replay and
/// live alike.
pub trait BetweenSteps {
    /// Is something waiting that should take effect at the next batch boundary? Called
    /// before each step and when the input is idle; must be cheap.
    fn waiting(&mut self) -> bool;
    /// Apply what is waiting; called at a batch boundary after [`BetweenSteps::waiting`]
    /// returned true.
    fn apply(&mut self, d: &mut Dispatcher) -> Result<(), SinkError>;
}

/// Nothing to do between steps.
pub struct NoHooks;

impl BetweenSteps for NoHooks {
    fn waiting(&mut self) -> bool {
        false
    }
    fn apply(&mut self, _d: &mut Dispatcher) -> Result<(), SinkError> {
        Ok(())
    }
}
