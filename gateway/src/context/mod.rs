//! What a request carries along, below every other layer: its id, trace
//! context, hop count and the inbound bearer token's claims. `outbound`
//! forwards it, `guest` hands it to each instance, `edge` creates it.

pub(crate) mod inbound;
