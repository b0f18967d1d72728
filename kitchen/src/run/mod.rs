//! The kitchen's runs, each wiring input → parse → dispatch → outputs on its threads:
//! [`replay`] for `-r FILE`.

pub mod replay;
