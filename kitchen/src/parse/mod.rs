//! Parse and batch: everything between a captured packet and the dispatcher. Each packet is
//! parsed once into the WIT `packet` record ([`packet`]), its IP fragments put back together
//! ([`defrag`]), grouped into batches with the
//! interval pokes placed between them ([`batch`], [`poke_clock`]), tracked as a connection
//! when some chef asks for flows ([`flow_stage`]), its TCP bytes reassembled when some chef
//! asks for streams ([`stream_stage`]), and packed as bytes for the chefs that take the lean
//! form ([`packed_batch`]).

pub mod batch;
pub mod defrag;
pub mod flow_stage;
pub mod packed_batch;
pub mod packet;
pub mod poke_clock;
pub mod stream_stage;
